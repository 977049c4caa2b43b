"""Inference with IVGF models: loading, the missing-modality protocol, sliding-window and test-time augmentation.

* :func:`load_model_and_processor` loads a saved folder or Hub id as the right task model (no remote code needed
  where ``ivgf_hf`` is installed).
* :func:`apply_protocol` is the paper's missing-modality protocol (section IV-G, Table VI): the missing image is
  replaced by the other modality's image, at the raw 8-bit level before normalisation, converted to the right
  channel count (infrared repeated to 3 channels; visible to grey by the channel mean, rounded to 8 bits).
* :func:`segmentation_probabilities` runs whole-image or sliding-window inference (windows' logits averaged
  where they overlap) with optional horizontal-flip and multi-scale test-time augmentation (class probabilities
  averaged over the views, as mmseg's ``aug_test`` does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from .modeling.image_processing_ivgf import SIXTEEN_BIT_MODES, SIXTEEN_BIT_TO_EIGHT_BIT
from .modeling.modeling_ivgf import LUMA_WEIGHTS

__all__ = [
    "PROTOCOLS",
    "SlidingWindow",
    "apply_protocol",
    "as_rgb_array",
    "as_grey_array",
    "model_task",
    "load_model_and_processor",
    "prepare_inputs",
    "window_starts",
    "sliding_window_logits",
    "segmentation_probabilities",
    "segment",
    "detect",
]

# The missing-modality protocols: which image is missing ("none": both present).
PROTOCOLS = ("none", "visible_missing", "infrared_missing")

_TASK_BY_SUFFIX = {"ForSemanticSegmentation": "segmentation", "ForObjectDetection": "detection"}


def as_rgb_array(image, name: str = "visible image") -> np.ndarray:
    """A visible image (PIL, or array HW / HWC with 1 or 3 channels) as a uint8 (H, W, 3) array."""
    if hasattr(image, "getbands"):
        image = image if image.mode == "RGB" else image.convert("RGB")
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3):
        raise ValueError(f"{name} must be an RGB or grey image (H, W[, 3]), got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"{name} must hold 8-bit values, got dtype {array.dtype}")
    return np.ascontiguousarray(np.broadcast_to(array, (*array.shape[:2], 3)))


def as_grey_array(image, name: str = "infrared image") -> np.ndarray:
    """An infrared image as a uint8 (H, W) array: grey as is, 3-channel (24-bit grey) by the channel mean,
    16-bit images mapped linearly onto 8 bits (65535 -> 255), as the image processor does."""
    if hasattr(image, "getbands"):
        if image.mode in SIXTEEN_BIT_MODES:
            image = np.asarray(image, dtype=np.float64) * SIXTEEN_BIT_TO_EIGHT_BIT
            return np.rint(image).astype(np.uint8)
        image = image if image.mode in ("L", "RGB") else image.convert("RGB")
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[-1] == 3:
        array = np.rint(array.mean(axis=-1, dtype=np.float64))
        return array.astype(np.uint8)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a grey image (H, W) or a 3-channel grey image, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"{name} must hold 8-bit values, got dtype {array.dtype}")
    return array


def apply_protocol(visible: np.ndarray, infrared: np.ndarray, protocol: str) -> tuple:
    """Apply a missing-modality protocol to one raw pair.

    Args:
        visible: uint8 (H, W, 3).
        infrared: uint8 (H, W).
        protocol: ``"none"`` (unchanged), ``"visible_missing"`` (visible := the infrared image repeated to 3
            channels) or ``"infrared_missing"`` (infrared := the visible image's BT.601 luma, rounded: the grey
            level cutout&mix uses too).

    Returns:
        ``(visible, infrared)`` with the same shapes and dtype.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if visible.shape[:2] != infrared.shape[:2]:
        raise ValueError(f"visible {visible.shape[:2]} and infrared {infrared.shape[:2]} sizes differ (H, W)")
    if protocol == "visible_missing":
        return np.repeat(infrared[..., None], 3, axis=2), infrared
    if protocol == "infrared_missing":
        luma = visible.astype(np.float64) @ np.asarray(LUMA_WEIGHTS, dtype=np.float64)
        return visible, np.clip(np.rint(luma), 0, 255).astype(np.uint8)
    return visible, infrared


def model_task(model) -> str:
    """``"segmentation"`` or ``"detection"`` from the model's class name (works for remote-code classes too)."""
    name = type(model).__name__
    for suffix, task in _TASK_BY_SUFFIX.items():
        if name.endswith(suffix):
            return task
    expected = " or ".join(f"*{suffix}" for suffix in _TASK_BY_SUFFIX)
    raise ValueError(f"{name} is not a segmentation or detection model (expected a class named {expected})")


def _task_class(architecture: str):
    if architecture == "IVGFForSemanticSegmentation":
        from .modeling.modeling_ivgf import IVGFForSemanticSegmentation

        return IVGFForSemanticSegmentation
    if architecture == "IVGFForObjectDetection":
        from .modeling.detection_ivgf import IVGFForObjectDetection

        return IVGFForObjectDetection
    return None


def load_model_and_processor(name_or_path: str, device: Union[str, torch.device, None] = None) -> tuple:
    """Load an IVGF task model (float32, eval mode) and its processor from a folder or Hub id.

    The class comes from ``config.architectures``. The processor is read from ``preprocessor_config.json``, or is
    the default :class:`IVGFImageProcessor` (with the model's infrared channel count) when the folder has none.
    """
    from safetensors import SafetensorError

    from .modeling.configuration_ivgf import IVGFConfig
    from .modeling.image_processing_ivgf import IVGFImageProcessor

    folder = Path(name_or_path)
    if folder.is_dir() and not (folder / "config.json").is_file():
        raise OSError(f"{folder} has no config.json; expected a model folder written by save_pretrained")
    config = IVGFConfig.from_pretrained(name_or_path)
    architectures = list(getattr(config, "architectures", None) or [])
    classes = [cls for cls in map(_task_class, architectures) if cls is not None]
    if not classes:
        raise ValueError(
            f"{name_or_path} holds {architectures or 'no architectures'}; expected IVGFForSemanticSegmentation or "
            "IVGFForObjectDetection in config.json 'architectures'"
        )
    try:
        model = classes[0].from_pretrained(name_or_path, dtype=torch.float32).eval()
    except SafetensorError as error:  # e.g. a model.safetensors cut short by a full disk or an interrupted copy
        raise OSError(
            f"the .safetensors weights of {name_or_path} are damaged or incomplete ({error}); save or download the "
            "model again"
        ) from None
    if device is not None:
        model.to(device)
    try:
        processor = IVGFImageProcessor.from_pretrained(name_or_path)
    except OSError:
        processor = IVGFImageProcessor(ir_num_channels=config.num_channels_ir)
    return model, processor


def prepare_inputs(processor, visibles: Sequence[np.ndarray], infrareds: Sequence[np.ndarray], device) -> dict:
    """Raw uint8 pairs -> ``{"pixel_values", "pixel_values_ir"}`` on ``device`` (the processor normalises and pads)."""
    batch = processor(images=list(visibles), images_ir=list(infrareds), return_tensors="pt")
    return {key: batch[key].to(device) for key in ("pixel_values", "pixel_values_ir")}


@dataclass(frozen=True)
class SlidingWindow:
    """Sliding-window inference settings in pixels of the model input: window ``crop`` and step ``stride``, each
    (height, width). A window larger than the image shrinks to the image."""

    crop: tuple
    stride: tuple

    @classmethod
    def parse(cls, value) -> Optional["SlidingWindow"]:
        """From None, a ``SlidingWindow``, ``"512,341"`` / ``(512, 341)`` (square crop, stride) or
        ``((crop_h, crop_w), (stride_h, stride_w))``."""
        if value is None or isinstance(value, SlidingWindow):
            return value
        if isinstance(value, str):
            try:
                value = tuple(int(part) for part in value.split(","))
            except ValueError:
                raise ValueError(f"sliding window must be 'CROP,STRIDE' in pixels, got {value!r}") from None
        value = tuple(value)
        if len(value) != 2:
            raise ValueError(f"sliding window needs a crop and a stride, got {value!r}")
        crop, stride = (tuple(v) if isinstance(v, (tuple, list)) else (v, v) for v in value)
        for label, pair in (("crop", crop), ("stride", stride)):
            if len(pair) != 2 or any(not isinstance(v, (int, np.integer)) or v < 1 for v in pair):
                raise ValueError(f"sliding window {label} must be positive integers (height, width), got {pair!r}")
        if stride[0] > crop[0] or stride[1] > crop[1]:
            raise ValueError(f"sliding window stride {stride} is larger than the crop {crop}: pixels would be skipped")
        return cls(tuple(int(v) for v in crop), tuple(int(v) for v in stride))

    def as_dict(self) -> dict:
        return {"crop": list(self.crop), "stride": list(self.stride)}


def window_starts(length: int, crop: int, stride: int) -> list:
    """Start offsets of windows of size ``min(crop, length)`` covering ``[0, length)``; the last one is flush
    with the end (mmseg's ``slide_inference`` grid)."""
    if length <= crop:
        return [0]
    count = math.ceil((length - crop) / stride) + 1
    return sorted({min(index * stride, length - crop) for index in range(count)})


def _model_stride(model) -> int:
    return int(math.prod(model.config.patch_sizes))


def _logits_fn(model) -> Callable:
    def forward(pixel_values, pixel_values_ir):
        return model(pixel_values=pixel_values, pixel_values_ir=pixel_values_ir, return_dict=True).logits.float()

    return forward


def sliding_window_logits(model, pixel_values: torch.Tensor, pixel_values_ir: torch.Tensor, window) -> torch.Tensor:
    """Logits (B, C, H, W) from overlapping windows, averaged where they overlap.

    ``window`` is a :class:`SlidingWindow` (or what :meth:`SlidingWindow.parse` accepts); its crop must be a
    multiple of the encoder stride (16), like the input's height and width.
    """
    window = SlidingWindow.parse(window)
    stride = _model_stride(model)
    if window.crop[0] % stride or window.crop[1] % stride:
        raise ValueError(f"sliding window crop {window.crop} must be a multiple of the encoder stride {stride}")
    forward = _logits_fn(model)
    height, width = pixel_values.shape[-2:]
    rows = window_starts(height, window.crop[0], window.stride[0])
    cols = window_starts(width, window.crop[1], window.stride[1])
    crop_h, crop_w = min(window.crop[0], height), min(window.crop[1], width)
    total, counts = None, torch.zeros(1, 1, height, width, device=pixel_values.device)
    for top in rows:
        for left in cols:
            region = (..., slice(top, top + crop_h), slice(left, left + crop_w))
            logits = forward(pixel_values[region], pixel_values_ir[region])
            if total is None:
                total = logits.new_zeros(logits.shape[0], logits.shape[1], height, width)
            total[region] += logits
            counts[region] += 1
    return total / counts


def _resize_pair(pixel_values, pixel_values_ir, scale: float, divisor: int) -> tuple:
    """Resize both inputs by ``scale`` (bilinear, antialiased) and zero-pad to a multiple of ``divisor``.

    Returns the two tensors and the resized (unpadded) (height, width)."""
    height, width = pixel_values.shape[-2:]
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    padded = (math.ceil(size[0] / divisor) * divisor, math.ceil(size[1] / divisor) * divisor)
    outputs = []
    for tensor in (pixel_values, pixel_values_ir):
        resized = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)
        outputs.append(F.pad(resized, (0, padded[1] - size[1], 0, padded[0] - size[0])))
    return outputs[0], outputs[1], size


def segmentation_probabilities(
    model,
    pixel_values: torch.Tensor,
    pixel_values_ir: torch.Tensor,
    *,
    sliding_window=None,
    tta_flip: bool = False,
    tta_scales: Sequence[float] = (1.0,),
    size_divisor: int = 32,
) -> torch.Tensor:
    """Class probabilities (B, C, H, W) at the input size, averaged over the test-time views.

    Every view (each scale in ``tta_scales``, each with and without a horizontal flip when ``tta_flip``) runs
    whole-image or ``sliding_window`` inference; its logits are un-flipped, cropped to the resized image,
    resized bilinearly back to (H, W) and turned into probabilities. A scaled view is zero-padded (the
    normalised mean) to a multiple of ``size_divisor``. With one view at scale 1 this is ``softmax(logits)``.
    """
    scales = [float(s) for s in tta_scales]
    if not scales or any(not math.isfinite(s) or s <= 0 for s in scales):
        raise ValueError(f"tta_scales must be positive numbers, got {list(tta_scales)}")
    height, width = pixel_values.shape[-2:]
    window = SlidingWindow.parse(sliding_window)
    total, views = None, 0
    for scale in scales:
        if scale == 1.0:
            vis, ir, size = pixel_values, pixel_values_ir, (height, width)
        else:
            vis, ir, size = _resize_pair(pixel_values, pixel_values_ir, scale, max(size_divisor, _model_stride(model)))
        for flip in (False, True) if tta_flip else (False,):
            v, i = (vis.flip(-1), ir.flip(-1)) if flip else (vis, ir)
            logits = sliding_window_logits(model, v, i, window) if window else _logits_fn(model)(v, i)
            logits = logits.flip(-1) if flip else logits
            logits = logits[..., : size[0], : size[1]]
            if size != (height, width):
                logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
            probabilities = logits.softmax(dim=1)
            total = probabilities if total is None else total + probabilities
            views += 1
    return total / views


@torch.inference_mode()
def segment(
    model, processor, visible, infrared, *, protocol="none", sliding_window=None, tta_flip=False, tta_scales=(1.0,)
) -> torch.Tensor:
    """Label map (H, W) int64 of one raw pair (PIL images or arrays), at the original size."""
    rgb, grey = apply_protocol(as_rgb_array(visible), as_grey_array(infrared), protocol)
    inputs = prepare_inputs(processor, [rgb], [grey], next(model.parameters()).device)
    probabilities = segmentation_probabilities(
        model,
        inputs["pixel_values"],
        inputs["pixel_values_ir"],
        sliding_window=sliding_window,
        tta_flip=tta_flip,
        tta_scales=tta_scales,
        size_divisor=getattr(processor, "size_divisor", 32),
    )
    return processor.post_process_semantic_segmentation(probabilities, target_sizes=[rgb.shape[:2]])[0].cpu()


@torch.inference_mode()
def detect(model, processor, visible, infrared, *, protocol="none", threshold: float = 0.5) -> dict:
    """Detections of one raw pair: ``{"boxes" (n, 4) absolute xyxy in the original image, "scores", "labels"}``
    with score > ``threshold``."""
    rgb, grey = apply_protocol(as_rgb_array(visible), as_grey_array(infrared), protocol)
    inputs = prepare_inputs(processor, [rgb], [grey], next(model.parameters()).device)
    outputs = model(**inputs, return_dict=True)
    result = processor.post_process_object_detection(outputs, threshold=threshold, target_sizes=[rgb.shape[:2]])[0]
    return {key: value.cpu() for key, value in result.items()}
