"""The import layers of docs/architecture.md: modeling/ is the base, library code never imports the commands."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELING_ALLOWED = {"torch", "transformers", "torchvision", "timm", "numpy", "PIL"}


def _imports(path: Path):
    """(module, level) of every import statement in ``path``; relative imports keep their dots as ``level``."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.module or "", node.level


def _library_files():
    """Every ``ivgf_hf`` module except the command layer (``commands/`` and ``cli.py``)."""
    files = (ROOT / "ivgf_hf").rglob("*.py")
    return sorted(p for p in files if "commands" not in p.relative_to(ROOT).parts and p.name != "cli.py")


@pytest.mark.parametrize("path", sorted((ROOT / "modeling").glob("*.py")), ids=lambda p: p.name)
def test_modeling_imports_only_its_dependencies_and_siblings(path):
    import sys

    for module, level in _imports(path):
        top = module.split(".")[0]
        if level:
            assert level == 1 and "." not in module, f"{path.name}: only flat sibling imports, got {module!r}"
        else:
            assert top in MODELING_ALLOWED or top in sys.stdlib_module_names, f"{path.name} imports {module!r}"


def test_library_code_never_imports_the_commands():
    offenders = []
    for path in _library_files():
        package = path.relative_to(ROOT).parent.parts
        for module, level in _imports(path):
            absolute = module if not level else ".".join(package[: len(package) - level + 1] + (module,))
            if absolute.startswith("ivgf_hf.commands"):
                offenders.append(f"{path.relative_to(ROOT)}: {module!r}")
    assert not offenders, offenders
