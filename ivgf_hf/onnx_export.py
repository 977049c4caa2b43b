"""ONNX export of IVGF models and an onnxruntime parity check against PyTorch.

* Segmentation (``part="logits"``): the whole model. Inputs ``pixel_values`` (B, 3, H, W) and ``pixel_values_ir``
  (B, C_ir, H, W), output ``logits`` (B, num_labels, H, W); B, H and W dynamic (H and W multiples of 32, as the
  processor pads, from 64). Written by ``torch.onnx.export(..., dynamo=True)``.
* Detection, ``part="detections"``: the whole detector for one image of a fixed size (the example's): outputs
  ``boxes`` (n, 4) absolute (x0, y0, x1, y1), ``scores`` (n,), ``labels`` (n,) 0-based. torchvision's proposal
  selection and NMS have data-dependent shapes that ``torch.export`` refuses, so this part uses the TorchScript
  exporter (``dynamo=False``), whose trace fixes the input size.
* Detection, ``part="features"``: the trunk and the feature pyramid, outputs ``p2``..``p5`` and ``pool`` (P6),
  B, H and W dynamic (dynamo exporter); the RPN and RoI heads then run in PyTorch.

Opset :data:`DEFAULT_OPSET`, weights inside the ``.onnx`` file.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Sequence, Union

import torch
from torch import nn

__all__ = [
    "DEFAULT_OPSET",
    "SIZE_MULTIPLE",
    "OnnxExportResult",
    "adaptive_avg_pool2d",
    "exportable_pooling",
    "SegmentationLogits",
    "DetectionFeatures",
    "DetectionOutputs",
    "export_module",
    "export_onnx",
    "example_inputs",
    "onnx_parity",
]

# Opset 18: the opset of torch's ONNX function library (torchlib), so the dynamo exporter writes it without the
# version converter (torch's default, 20, is converted afterwards); run by every onnxruntime >= 1.14.
DEFAULT_OPSET = 18
# Height and width of an exported graph are multiples of this (the processor's padding unit).
SIZE_MULTIPLE = 32
_MIN_SIZE = 64
_MIN_EXAMPLE_SIZE = 96
_MAX_SIZE = 4096
_FEATURE_NAMES = ("p2", "p3", "p4", "p5", "pool")


def _averaging_matrix(size, bins: int, like: torch.Tensor) -> torch.Tensor:
    """(bins, size) whose row i averages the inputs of adaptive-pooling bin i."""
    index = torch.arange(bins, device=like.device)[:, None]
    start = (index * size) // bins
    end = ((index + 1) * size + bins - 1) // bins
    position = torch.arange(size, device=like.device)[None, :]
    member = ((position >= start) & (position < end)).to(like.dtype)
    return member / member.sum(dim=1, keepdim=True)


def adaptive_avg_pool2d(x: torch.Tensor, output_size) -> torch.Tensor:
    """``F.adaptive_avg_pool2d`` as two averaging matrices, exportable with a symbolic input size:
    (B, C, H, W) -> (B, C, oh, ow). Bin i of n inputs into o outputs spans [floor(i n / o), ceil((i + 1) n / o)),
    as in torch. (The exporter's own decomposition keeps the bin widths of the traced example.)"""
    rows, cols = (output_size, output_size) if isinstance(output_size, int) else output_size
    height, width = x.shape[-2:]
    rows = height if rows is None else rows
    cols = width if cols is None else cols
    return _averaging_matrix(height, rows, x) @ x @ _averaging_matrix(width, cols, x).T


@contextmanager
def exportable_pooling(model: nn.Module):
    """Within the block, every ``nn.AdaptiveAvgPool2d`` of ``model`` (UperNet's pyramid pooling) computes
    :func:`adaptive_avg_pool2d`; their own forward is restored after it."""
    pools = [module for module in model.modules() if type(module) is nn.AdaptiveAvgPool2d]
    for pool in pools:
        pool.forward = partial(adaptive_avg_pool2d, output_size=pool.output_size)
    try:
        yield model
    finally:
        for pool in pools:
            del pool.forward


class SegmentationLogits(nn.Module):
    """(pixel_values (B, 3, H, W), pixel_values_ir (B, C_ir, H, W)) -> logits (B, num_labels, H, W)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor, pixel_values_ir: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values, pixel_values_ir=pixel_values_ir, return_dict=True).logits


class DetectionFeatures(nn.Module):
    """(pixel_values, pixel_values_ir) -> the FPN maps P2..P5 and P6 (``pool``) of an ``IVGFForObjectDetection``:
    (B, fpn_channels, ~H/s, ~W/s) for s = 4, 8, 16, 32, 64."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor, pixel_values_ir: torch.Tensor) -> tuple:
        fused = self.model.ivgf(pixel_values, pixel_values_ir, return_dict=True).feature_maps
        features = self.model.fpn(dict(zip(_FEATURE_NAMES[:4], fused)))
        return tuple(features[name] for name in _FEATURE_NAMES)


class DetectionOutputs(nn.Module):
    """(pixel_values (1, 3, H, W), pixel_values_ir (1, C_ir, H, W)) -> boxes (n, 4) absolute (x0, y0, x1, y1),
    scores (n,) decreasing, labels (n,) int64 0-based: ``IVGFForObjectDetection``'s detections of the image."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor, pixel_values_ir: torch.Tensor) -> tuple:
        detections = self.model(pixel_values=pixel_values, pixel_values_ir=pixel_values_ir, return_dict=True)
        found = detections.detections[0]
        return found["boxes"], found["scores"], found["labels"]


@dataclass
class OnnxExportResult:
    """What :func:`export_onnx` wrote: the file, the task, the exported part, opset, input and output names."""

    path: Path
    task: str
    part: str
    opset: int
    input_names: list
    output_names: list


def example_inputs(config, batch_size: int = 1, height: int = 64, width: int = 64, seed: int = 0) -> tuple:
    """Seeded normal ``(pixel_values (B, num_channels, H, W), pixel_values_ir (B, num_channels_ir, H, W))``."""
    generator = torch.Generator().manual_seed(seed)
    visible = torch.randn(batch_size, config.num_channels, height, width, generator=generator)
    infrared = torch.randn(batch_size, config.num_channels_ir, height, width, generator=generator)
    return visible, infrared


def _dynamic_shapes() -> dict:
    """Batch dynamic; height and width dynamic multiples of :data:`SIZE_MULTIPLE` (shared by both inputs)."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    rows = torch.export.Dim("rows", min=_MIN_SIZE // SIZE_MULTIPLE, max=_MAX_SIZE // SIZE_MULTIPLE)
    cols = torch.export.Dim("cols", min=_MIN_SIZE // SIZE_MULTIPLE, max=_MAX_SIZE // SIZE_MULTIPLE)
    shape = {0: batch, 2: SIZE_MULTIPLE * rows, 3: SIZE_MULTIPLE * cols}
    return {"pixel_values": shape, "pixel_values_ir": dict(shape)}


def export_module(model: nn.Module, part: str = "auto") -> tuple:
    """``(wrapper module, part, output names)`` for ``model``; ``part``: "auto" (segmentation: "logits",
    detection: "detections"), "logits", "detections" or "features"."""
    from .inference import model_task

    task = model_task(model)
    if part == "auto":
        part = "logits" if task == "segmentation" else "detections"
    if task == "segmentation" and part == "logits":
        return SegmentationLogits(model).eval(), part, ["logits"]
    if task == "detection" and part == "detections":
        return DetectionOutputs(model).eval(), part, ["boxes", "scores", "labels"]
    if task == "detection" and part == "features":
        return DetectionFeatures(model).eval(), part, list(_FEATURE_NAMES)
    raise ValueError(
        f"cannot export part {part!r} of a {task} model: segmentation exports 'logits', detection 'detections' "
        "or 'features'"
    )


def export_onnx(
    model: nn.Module,
    path: Union[str, Path],
    *,
    part: str = "auto",
    opset: int = DEFAULT_OPSET,
    example_size: tuple = (96, 128),
) -> OnnxExportResult:
    """Export ``model`` (an IVGF task model, switched to eval mode and float32 on the CPU) to ``path``.

    Args:
        part: "auto" (segmentation: "logits", detection: "detections"), or a part named in the module docstring.
        opset: ONNX opset of the graph.
        example_size: (H, W) of the example traced, multiples of 32. "detections": the graph's fixed input size.
            Dynamic parts: at least 96 and not square, as the tracer keeps only the branch the example takes and
            fixes every dimension of size 1 (a square example whose token grid equals the position tables'
            pretraining grid would keep their no-resize shortcut; below 96 pixels the map F4 is 1 pixel high or
            wide); the graph then accepts other sizes.
    """
    model = model.float().cpu().eval()
    module, part, output_names = export_module(model, part)
    height, width = example_size
    dynamic = part != "detections"
    smallest = _MIN_EXAMPLE_SIZE if dynamic else _MIN_SIZE
    if (
        height % SIZE_MULTIPLE
        or width % SIZE_MULTIPLE
        or min(height, width) < smallest
        or (dynamic and height == width)
    ):
        shape = "a non-square (H, W)" if dynamic else "(H, W)"
        raise ValueError(
            f"example_size for part {part!r} must be {shape}, multiples of {SIZE_MULTIPLE}, at least {smallest}; "
            f"got {example_size}"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    input_names = ["pixel_values", "pixel_values_ir"]
    with torch.no_grad(), exportable_pooling(module):
        if dynamic:
            # Batch 2 in the example: a batch of 1 would be specialised to the constant 1 by torch.export.
            program = torch.onnx.export(
                module,
                example_inputs(model.config, 2, height, width),
                dynamo=True,
                opset_version=opset,
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=_dynamic_shapes(),
            )
            program.save(str(path), external_data=False)
        else:
            torch.onnx.export(
                module,
                example_inputs(model.config, 1, height, width),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=input_names,
                output_names=output_names,
            )
    from .inference import model_task

    return OnnxExportResult(path, model_task(model), part, opset, input_names, output_names)


def _max_abs_diff(got: torch.Tensor, expected: torch.Tensor) -> float:
    if got.shape != expected.shape:
        return float("inf")
    return float((got.double() - expected.double()).abs().max()) if got.numel() else 0.0


def onnx_parity(
    model: nn.Module,
    path: Union[str, Path],
    sizes: Sequence[tuple] = ((64, 64), (96, 128)),
    batch_size: int = 1,
    part: str = "auto",
) -> list:
    """Run the ``.onnx`` file in onnxruntime (CPU) and the PyTorch model on the same seeded inputs.

    Returns:
        One dict per (H, W) of ``sizes``: ``{"size", "batch_size", "outputs": {name: shape}, "max_abs_diff"}``
        (the largest absolute difference over every output; infinite when the shapes differ, e.g. another number
        of detections).
    """
    import onnxruntime

    model = model.float().cpu().eval()
    module, _, output_names = export_module(model, part)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rows = []
    for seed, (height, width) in enumerate(sizes):
        visible, infrared = example_inputs(model.config, batch_size, height, width, seed=seed)
        with torch.no_grad():
            expected = module(visible, infrared)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(output_names, {"pixel_values": visible.numpy(), "pixel_values_ir": infrared.numpy()})
        diff = max(_max_abs_diff(torch.from_numpy(g), e) for g, e in zip(got, expected))
        rows.append(
            {
                "size": (height, width),
                "batch_size": batch_size,
                "outputs": {name: tuple(g.shape) for name, g in zip(output_names, got)},
                "max_abs_diff": diff,
            }
        )
    return rows
