"""Export IVGF models as self-contained Hub folders and prove they load as remote code.

``export_for_hub`` writes safetensors weights, ``config.json`` with an ``auto_map``, the processor config, the
code files of ``ivgf_hf.modeling`` and an optional model card, then reloads the folder in a fresh Python process
where ``ivgf_hf`` cannot be imported (``trust_remote_code=True``) and compares outputs on a fixed input. The
folder only appears at its destination when that check passes.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, Union

import torch

from .auto import register_for_auto_class

__all__ = ["ExportCheckError", "export_for_hub", "check_remote_load", "AUTO_CLASS_BY_MODEL"]

AUTO_CLASS_BY_MODEL = {
    "IVGFModel": "AutoModel",
    "IVGFBackbone": "AutoBackbone",
    "IVGFForSemanticSegmentation": "AutoModelForSemanticSegmentation",
    "IVGFForObjectDetection": "AutoModelForObjectDetection",
}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


class ExportCheckError(RuntimeError):
    """The exported folder did not reproduce the model's outputs when loaded as remote code."""


_REMOTE_LOAD_SCRIPT = r"""
import sys
sys.modules["ivgf_hf"] = None  # the package must not be importable: everything comes from the folder
import torch
import transformers
folder, inputs_path, outputs_path, auto_class = sys.argv[1:5]
model = getattr(transformers, auto_class).from_pretrained(folder, trust_remote_code=True, dtype=torch.float32).eval()
processor = transformers.AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
inputs = torch.load(inputs_path)
with torch.no_grad():
    output = model(**inputs["model"])
processed = processor(**inputs["processor"], return_tensors="pt")
torch.save({"output": {k: v for k, v in output.items()}, "processed": dict(processed)}, outputs_path)
"""


def _fixed_inputs(config, size: int = 64) -> dict:
    """A seeded image pair, as raw uint8 images for the processor and as tensors for the model."""
    generator = torch.Generator().manual_seed(0)
    visible = torch.randint(0, 256, (3, size, size), generator=generator, dtype=torch.uint8)
    infrared = torch.randint(0, 256, (1, size, size), generator=generator, dtype=torch.uint8)
    model_inputs = {
        "pixel_values": torch.randn(1, config.num_channels, size, size, generator=generator),
        "pixel_values_ir": torch.randn(1, config.num_channels_ir, size, size, generator=generator),
    }
    return {"model": model_inputs, "processor": {"images": [visible], "images_ir": [infrared]}}


def _compare(expected, actual, path: str, rtol: float) -> list:
    """Names of the (nested) entries where ``actual`` differs from ``expected`` by more than ``rtol`` of its scale."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(actual, torch.Tensor) or expected.shape != actual.shape:
            return [path]
        if expected.numel() == 0:
            return []
        expected, actual = expected.double(), actual.double()
        scale = expected.abs().max().item()
        return [] if (expected - actual).abs().max().item() <= rtol * scale + 1e-12 else [path]
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [path]
        return [m for key in expected for m in _compare(expected[key], actual.get(key), f"{path}.{key}", rtol)]
    if isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)) or len(actual) != len(expected):
            return [path]
        return [m for i, (e, a) in enumerate(zip(expected, actual)) for m in _compare(e, a, f"{path}[{i}]", rtol)]
    return [] if expected == actual else [path]


def check_remote_load(folder: Union[str, Path], model, processor, rtol: float = 1e-4, timeout: int = 600) -> None:
    """Reload ``folder`` in a fresh process without ``ivgf_hf`` and compare it with ``model`` and ``processor``.

    Every output tensor must match within ``rtol`` times its largest magnitude (fresh models have tiny logits, so
    a fixed absolute tolerance would prove nothing).

    Raises:
        ExportCheckError: the load failed or an output differs (the message names the output and the error).
    """
    folder = Path(folder)
    auto_class = AUTO_CLASS_BY_MODEL[type(model).__name__]
    inputs = _fixed_inputs(model.config)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        expected_output = {k: v for k, v in model(**inputs["model"]).items()}
    model.train(was_training)
    expected_processed = dict(processor(**inputs["processor"], return_tensors="pt"))
    with tempfile.TemporaryDirectory(prefix="ivgf-check-") as work:
        inputs_path, outputs_path = os.path.join(work, "inputs.pt"), os.path.join(work, "outputs.pt")
        torch.save(inputs, inputs_path)
        environment = {**os.environ, "HF_HOME": os.path.join(work, "hf_home"), "HF_HUB_OFFLINE": "1"}
        environment.pop("PYTHONPATH", None)
        result = subprocess.run(
            [sys.executable, "-c", _REMOTE_LOAD_SCRIPT, str(folder.resolve()), inputs_path, outputs_path, auto_class],
            cwd=work,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise ExportCheckError(f"loading {folder} with trust_remote_code failed:\n{result.stderr[-3000:]}")
        actual = torch.load(outputs_path)
    mismatches = _compare(expected_output, actual["output"], "model", rtol)
    mismatches += _compare(expected_processed, actual["processed"], "processor", rtol)
    if mismatches:
        raise ExportCheckError(f"{folder} loaded as remote code differs from the model in: {mismatches}")


def export_for_hub(
    model,
    processor,
    folder: Union[str, Path],
    card: Optional[str] = None,
    overwrite: bool = False,
    check: bool = True,
) -> Path:
    """Write a Hub-ready folder for ``model`` and ``processor`` and verify it (see the module docstring).

    Args:
        model: an IVGF model (``IVGFModel``, ``IVGFBackbone``, ``IVGFForSemanticSegmentation`` or
            ``IVGFForObjectDetection``).
        processor: its ``IVGFImageProcessor``.
        folder: destination; must not exist (or be empty) unless ``overwrite``.
        card: model card text written as ``README.md``.
        overwrite: replace an existing folder.
        check: run :func:`check_remote_load` before moving the folder into place.

    Returns:
        The destination folder.
    """
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise FileExistsError(f"{folder} exists and is not empty; pass overwrite=True to replace it")
    if type(model).__name__ not in AUTO_CLASS_BY_MODEL:
        raise TypeError(f"cannot export {type(model).__name__}; expected one of {sorted(AUTO_CLASS_BY_MODEL)}")
    register_for_auto_class()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        if card is not None:
            (staging / "README.md").write_text(card, encoding="utf-8")
        pickles = [p.name for p in staging.iterdir() if p.suffix in PICKLE_SUFFIXES]
        if pickles:
            raise ExportCheckError(f"pickle files in the export: {pickles}")
        auto_map = json.loads((staging / "config.json").read_text())["auto_map"]
        if AUTO_CLASS_BY_MODEL[type(model).__name__] not in auto_map:
            raise ExportCheckError(f"config.json auto_map lacks {AUTO_CLASS_BY_MODEL[type(model).__name__]}: {auto_map}")
        if check:
            check_remote_load(staging, model, processor)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return folder
