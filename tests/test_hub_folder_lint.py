"""Every file of ``modeling/`` stays loadable as Hub remote code (see the reference notes on ``trust_remote_code``).

``transformers`` copies a model file plus the files it reaches through ``from .x import Y``, flat, and refuses to
load when an unguarded absolute import names a package the user lacks. So: absolute imports only from torch,
torchvision, transformers, timm, numpy and the standard library unless guarded (inside ``try:`` or
``if is_<lib>_available():``, the two forms transformers skips), and relative imports only as ``from .sibling
import Name`` of an existing file (``from . import x`` is not copied; ``from .a.b import`` crashes ``save_pretrained``).
"""

import ast
import sys
from pathlib import Path

import pytest
from transformers.dynamic_module_utils import get_imports
from transformers.utils import import_utils

import ivgf_hf.modeling

MODELING = Path(ivgf_hf.modeling.__file__).resolve().parent
MODELING_FILES = sorted(MODELING.glob("*.py"))
SIBLINGS = {path.stem for path in MODELING_FILES if path.name != "__init__.py"}
ALLOWED_PACKAGES = {"torch", "torchvision", "transformers", "timm", "numpy"} | set(sys.stdlib_module_names)


def _is_availability_guard(node: ast.If) -> bool:
    """``if is_xxx_available():`` as transformers recognises it: a call to a name defined in its import_utils."""
    for inner in ast.walk(node.test):
        name = getattr(getattr(inner, "func", None), "id", "") if isinstance(inner, ast.Call) else ""
        if hasattr(import_utils, name) or (name.startswith("is_flash_attn") and name.endswith("available")):
            return True
    return False


def import_problems(source: str, siblings: set, filename: str = "<source>") -> list:
    """Every import of ``source`` that would break (or burden) loading it as remote code, as readable messages."""
    problems = []

    def check_absolute(module: str, node, guarded: bool) -> None:
        if module.split(".")[0] not in ALLOWED_PACKAGES and not guarded:
            problems.append(
                f"{filename}:{node.lineno}: unguarded import of {module!r}: every Hub user would need it installed "
                "(allowed: torch, torchvision, transformers, timm, numpy, stdlib; guard others with try: or "
                "if is_<lib>_available():)"
            )

    def check_relative(node: ast.ImportFrom) -> None:
        names = ", ".join(alias.name for alias in node.names)
        written = f"from {'.' * node.level}{node.module or ''} import {names}"
        if node.module is None:
            problems.append(
                f"{filename}:{node.lineno}: {written}: the loader does not copy modules imported this "
                "way; write `from .module import Name`"
            )
        elif node.level != 1 or "." in node.module:
            problems.append(
                f"{filename}:{node.lineno}: {written}: remote code is one flat folder; import only "
                "siblings with a single dot"
            )
        elif node.module not in siblings:
            problems.append(f"{filename}:{node.lineno}: {written}: no sibling file {node.module}.py")

    def visit(node, guarded: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                check_absolute(alias.name, node, guarded)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                check_absolute(node.module, node, guarded)
            else:
                check_relative(node)
        guarded = guarded or isinstance(node, ast.Try) or (isinstance(node, ast.If) and _is_availability_guard(node))
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    visit(ast.parse(source, filename=filename), False)
    return problems


def test_modeling_folder_is_not_empty():
    assert {"configuration_ivgf", "modeling_ivgf", "image_processing_ivgf"} <= SIBLINGS


@pytest.mark.parametrize("path", MODELING_FILES, ids=lambda path: path.name)
def test_modeling_file_imports_are_remote_code_safe(path):
    problems = import_problems(path.read_text(encoding="utf-8"), SIBLINGS, path.name)
    assert not problems, "\n".join(problems)
    if path.name != "__init__.py":  # what the real loader will demand of a Hub user
        assert set(get_imports(path)) <= ALLOWED_PACKAGES


@pytest.mark.parametrize(
    "source, message",
    [
        ("import scipy\n", "unguarded import of 'scipy'"),
        ("def solve():\n    from scipy.optimize import linear_sum_assignment\n", "'scipy.optimize'"),
        ("from ivgf_hf.modeling.encoder_ivgf import IVGFEncoder\n", "'ivgf_hf.modeling.encoder_ivgf'"),
        ("def local_available():\n    return True\nif local_available():\n    import scipy\n", "'scipy'"),
        ("from . import encoder_ivgf\n", "does not copy modules imported this way"),
        ("from ..encoder_ivgf import IVGFEncoder\n", "one flat folder"),
        ("from .layers.fusion import Fusion\n", "one flat folder"),
        ("from .missing_ivgf import Thing\n", "no sibling file missing_ivgf.py"),
    ],
)
def test_checker_catches_each_failure_mode(source, message):
    problems = import_problems(source, {"encoder_ivgf"})
    assert len(problems) == 1 and message in problems[0], problems


@pytest.mark.parametrize(
    "source",
    [
        "import math\nimport torch.nn.functional as F\nfrom torchvision.ops import nms\nimport numpy as np\n",
        "try:\n    import scipy\nexcept ImportError:\n    scipy = None\n",
        "from transformers.utils import is_scipy_available\nif is_scipy_available():\n    import scipy\n",
        "from .encoder_ivgf import IVGFEncoder\n",
    ],
)
def test_checker_accepts_safe_imports(source):
    assert import_problems(source, {"encoder_ivgf"}) == []
