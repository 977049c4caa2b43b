"""Image processor for IVGF: paired visible + infrared images, segmentation maps and detection annotations.

Self-contained (torch, numpy and transformers' ``BaseImageProcessor``, which exists in 4.57.x and 5.x, with its own
``preprocess``) so that the same file works installed with ``ivgf_hf`` and copied to a Hub repo as remote code.

Pipeline per image: resize (optional) -> rescale to [0, 1] -> per-modality normalisation -> zero padding at the
bottom/right to the batch's largest size rounded up to ``size_divisor`` (at least 48 px). Segmentation maps are
resized with nearest neighbour and padded with ``ignore_index``; COCO boxes become normalised (cx, cy, w, h) relative
to the padded size.
"""

import math
import numbers
import warnings
from typing import TypedDict

import numpy as np
import torch
import torch.nn.functional as F
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

__all__ = [
    "IVGFImageProcessor",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INFRARED_MEAN",
    "INFRARED_STD",
    "SIXTEEN_BIT_MODES",
    "SIXTEEN_BIT_TO_EIGHT_BIT",
    "normalised_cxcywh_to_xyxy",
    "xyxy_to_normalised_cxcywh",
]

# Default normalisation on the 0-1 scale: ImageNet's for the visible image, InfMAE pretraining's for the infrared
# one. The library (data transforms, cutout&mix fills) imports these, so each value is written once.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INFRARED_MEAN = (0.425,)
INFRARED_STD = (0.200,)
# PIL modes of 16-bit single-channel images, and the multiplier that maps their range onto 8 bits (65535 -> 255).
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")
SIXTEEN_BIT_TO_EIGHT_BIT = 255.0 / 65535.0

# PIL.Image.Resampling values -> torch interpolation modes ("nearest-exact" samples pixel centres, like PIL).
_RESAMPLE_MODES = {0: "nearest-exact", 2: "bilinear", 3: "bicubic"}
_CHANNEL_COUNTS = (1, 3, 4)
# The smallest input IVGF's encoders take (3 tokens of the stride-16 stage per side): padding never stops below it.
_MIN_PADDED_SIDE = 48
_PIL_GREY_MODES = ("L", "F") + SIXTEEN_BIT_MODES
_PIL_MASK_MODES = ("L", "P", "1") + SIXTEEN_BIT_MODES
_META_KWARGS = ("image_processor_type", "auto_map", "processor_class", "feature_extractor_type", "_processor_class")


class IVGFImageProcessorKwargs(TypedDict, total=False):
    """Constructor parameters of [`IVGFImageProcessor`] (read by transformers 5's ``from_dict`` for overrides)."""

    do_resize: bool
    size: dict
    resample: int
    do_rescale: bool
    rescale_factor: float
    do_normalize: bool
    image_mean: list
    image_std: list
    ir_image_mean: list
    ir_image_std: list
    ir_num_channels: int
    do_pad: bool
    size_divisor: int
    ignore_index: int


def xyxy_to_normalised_cxcywh(boxes: torch.Tensor, height, width) -> torch.Tensor:
    """Absolute (x0, y0, x1, y1) boxes ``(..., 4)`` -> (cx, cy, w, h) as fractions of a ``height x width`` image."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height], -1)


def normalised_cxcywh_to_xyxy(boxes: torch.Tensor, height, width) -> torch.Tensor:
    """Normalised (cx, cy, w, h) boxes ``(..., 4)`` -> absolute (x0, y0, x1, y1) of a ``height x width`` image."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], -1)


def get_resize_output_size(height, width, size):
    """Output ``(height, width)`` of the resize rule for an input of ``height x width`` pixels.

    ``size`` is ``{"height", "width"}`` (stretch to that size) or ``{"shortest_edge"[, "longest_edge"]}`` (keep the
    aspect ratio: scale the short side to ``shortest_edge`` unless that makes the long side exceed
    ``longest_edge``, in which case the long side is scaled to ``longest_edge``; sides are rounded to integers).
    """
    if "height" in size:
        return int(size["height"]), int(size["width"])
    scale = size["shortest_edge"] / min(height, width)
    longest = size.get("longest_edge")
    if longest is not None and max(height, width) * scale > longest:
        scale = longest / max(height, width)
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def _check_size(size):
    if not isinstance(size, dict):
        raise ValueError(f"size must be a dict, got {type(size).__name__}: {size!r}")
    keys = set(size)
    if keys not in ({"height", "width"}, {"shortest_edge"}, {"shortest_edge", "longest_edge"}):
        raise ValueError(
            "size must have the keys {'height', 'width'} or {'shortest_edge'[, 'longest_edge']}, "
            f"got {sorted(keys)}"
        )
    for key, value in size.items():
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise ValueError(f"size[{key!r}] must be a positive integer, got {value!r}")
    if "longest_edge" in size and size["longest_edge"] < size["shortest_edge"]:
        raise ValueError(f"size['longest_edge'] must be >= size['shortest_edge'], got {size}")


def _check_mean_std(mean, std, name, num_channels):
    for label, values in ((f"{name}_mean", mean), (f"{name}_std", std)):
        if len(values) not in (1, num_channels):
            raise ValueError(f"{label} must have 1 or {num_channels} values, got {len(values)}: {list(values)}")
    if any(value <= 0 for value in std):
        raise ValueError(f"{name}_std must be positive, got {list(std)}")


def _as_float_list(value, name):
    if isinstance(value, numbers.Real):
        return [float(value)]
    try:
        values = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or a sequence of numbers, got {value!r}") from None
    if not values:
        raise ValueError(f"{name} must not be empty")
    return values


def _resample_code(value):
    """A PIL resampling filter (enum or int) as its int code, restricted to those torch can reproduce."""
    code = int(value) if isinstance(value, numbers.Integral) else None
    if code not in _RESAMPLE_MODES:
        raise ValueError(f"resample must be 0 (nearest), 2 (bilinear) or 3 (bicubic), got {value!r}")
    return code


def _positive_int(value, name):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _normalise_settings(settings):
    """Coerce and validate the processor settings (a dict keyed like ``IVGFImageProcessorKwargs``)."""
    out = dict(settings)
    for key in ("do_resize", "do_rescale", "do_normalize", "do_pad"):
        out[key] = bool(out[key])
    out["resample"] = _resample_code(out["resample"])
    out["rescale_factor"] = float(out["rescale_factor"])
    out["size_divisor"] = _positive_int(out["size_divisor"], "size_divisor")
    out["ir_num_channels"] = int(out["ir_num_channels"])
    out["ignore_index"] = int(out["ignore_index"])
    for key in ("image_mean", "image_std", "ir_image_mean", "ir_image_std"):
        out[key] = _as_float_list(out[key], key)
    if out["size"] is not None:
        _check_size(out["size"])
        out["size"] = dict(out["size"])
    if out["do_resize"] and out["size"] is None:
        raise ValueError("do_resize=True needs size ({'height', 'width'} or {'shortest_edge'[, 'longest_edge']})")
    if out["ir_num_channels"] not in (1, 3):
        raise ValueError(f"ir_num_channels must be 1 or 3, got {out['ir_num_channels']}")
    _check_mean_std(out["image_mean"], out["image_std"], "image", 3)
    _check_mean_std(out["ir_image_mean"], out["ir_image_std"], "ir_image", out["ir_num_channels"])
    return out


def _is_single_image(value):
    return isinstance(value, (np.ndarray, torch.Tensor)) or hasattr(value, "getbands")


def _as_list(inputs, name, batch_ndim):
    """Turn one input or a batch (list, or array/tensor with ``batch_ndim`` dimensions) into a list."""
    if inputs is None:
        return None
    if isinstance(inputs, (list, tuple)):
        items = list(inputs)
    elif isinstance(inputs, (np.ndarray, torch.Tensor)) and inputs.ndim == batch_ndim:
        items = list(inputs)
    elif _is_single_image(inputs):
        items = [inputs]
    else:
        raise TypeError(f"{name} must be a PIL image, numpy array, torch tensor or a list of them, got {type(inputs)}")
    if not items:
        raise ValueError(f"{name} is empty: pass at least one item or None")
    return items


def _channels_first(tensor, channels_last_first, name, index):
    """A HW or 3-D tensor as CHW. ``channels_last_first``: try HWC before CHW (numpy convention), else CHW first."""
    if tensor.ndim == 2:
        return tensor.unsqueeze(0)
    if tensor.ndim != 3:
        raise ValueError(f"{name}[{index}] must have 2 (HW) or 3 dimensions, got shape {tuple(tensor.shape)}")
    last, first = tensor.shape[-1] in _CHANNEL_COUNTS, tensor.shape[0] in _CHANNEL_COUNTS
    if last and (channels_last_first or not first):
        return tensor.permute(2, 0, 1)
    if first:
        return tensor
    raise ValueError(
        f"{name}[{index}] has shape {tuple(tensor.shape)}: no channel dimension of size 1, 3 or 4 found "
        "(expected HW, HWC or CHW)"
    )


def _numpy_to_torch(array):
    """Share memory with a numpy array when torch can (writable, non-negative strides), else copy it."""
    if not array.flags.writeable or any(stride < 0 for stride in array.strides):
        array = array.copy()
    return torch.from_numpy(array)


def _image_to_tensor(item, name, index):
    """One raw image as ``(CHW tensor in its own dtype, rescale multiplier)``, without copying where possible.

    PIL images and numpy arrays are read as HW/HWC (CHW as a fallback), torch tensors as HW/CHW (HWC as a
    fallback). Integer data are 8-bit, except uint16 and 16-bit PIL modes, whose multiplier maps 65535 onto 255 so
    that ``rescale_factor`` (1/255) brings both to [0, 1].
    """
    sixteen_bit = False
    if hasattr(item, "getbands"):
        sixteen_bit = item.mode in SIXTEEN_BIT_MODES
        keep_mode = item.mode in ("RGB", "RGBA") + _PIL_GREY_MODES
        item = np.array(item if keep_mode else item.convert("RGB"))
    if isinstance(item, np.ndarray):
        if item.dtype.kind not in "uif":
            raise ValueError(f"{name}[{index}] has unsupported dtype {item.dtype}")
        tensor, channels_last_first = _numpy_to_torch(item), True
    elif isinstance(item, torch.Tensor):
        if item.dtype == torch.bool or item.is_complex():
            raise ValueError(f"{name}[{index}] has unsupported dtype {item.dtype}")
        tensor, channels_last_first = item.detach().cpu(), False
    else:
        raise TypeError(f"{name}[{index}] must be a PIL image, numpy array or torch tensor, got {type(item).__name__}")
    if tensor.dtype == torch.uint16:  # few torch kernels support uint16
        sixteen_bit, tensor = True, tensor.to(torch.int32)
    tensor = _channels_first(tensor, channels_last_first, name, index)
    if 0 in tensor.shape:
        raise ValueError(f"{name}[{index}] is empty (shape {tuple(tensor.shape)})")
    return tensor, (SIXTEEN_BIT_TO_EIGHT_BIT if sixteen_bit else 1.0)


def _mask_to_tensor(item, index):
    """One segmentation map as an integer HW tensor (accepts HW, HW1, 1HW; PIL modes L, P, 1, I, I;16)."""
    if hasattr(item, "getbands"):
        if item.mode not in _PIL_MASK_MODES:
            raise ValueError(
                f"segmentation_maps[{index}] is a PIL image in mode {item.mode!r}; expected a label map in mode "
                f"{_PIL_MASK_MODES} (convert colour-coded masks to class indices first)"
            )
        item = np.array(item)
    if isinstance(item, np.ndarray):
        item = _numpy_to_torch(item)
    if not isinstance(item, torch.Tensor):
        raise TypeError(
            f"segmentation_maps[{index}] must be a PIL image, numpy array or torch tensor, got {type(item).__name__}"
        )
    mask = item.detach().cpu()
    if mask.ndim == 3 and 1 in (mask.shape[0], mask.shape[-1]):
        mask = mask.squeeze(0) if mask.shape[0] == 1 else mask.squeeze(-1)
    if mask.ndim != 2:
        raise ValueError(f"segmentation_maps[{index}] must be HW (or HW1 / 1HW), got shape {tuple(item.shape)}")
    if mask.is_floating_point() and not torch.equal(mask, mask.round()):
        raise ValueError(f"segmentation_maps[{index}] holds non-integer values; label maps need class indices")
    if mask.dtype == torch.uint16:
        mask = mask.to(torch.int32)
    return mask


def _resize_image(image, out_hw, mode):
    """Resize a CHW tensor to ``out_hw``, antialiased for bilinear/bicubic as PIL and torchvision do.

    uint8 images are resized in uint8 (torch's fast kernel; results rounded like PIL's), others in float32.
    """
    if tuple(image.shape[-2:]) == tuple(out_hw):
        return image
    if image.dtype != torch.uint8:
        image = image.float()
    antialias = mode in ("bilinear", "bicubic")
    align = {"align_corners": False} if antialias else {}
    return F.interpolate(image[None], size=out_hw, mode=mode, antialias=antialias, **align)[0]


def _resize_mask(mask, out_hw):
    """Nearest-neighbour resize of an integer HW tensor by index gathering (pixel centres, exact for any value)."""
    in_h, in_w = mask.shape
    out_h, out_w = out_hw
    if (in_h, in_w) == (out_h, out_w):
        return mask
    rows = ((torch.arange(out_h, dtype=torch.float64) + 0.5) * (in_h / out_h)).floor().long().clamp_(max=in_h - 1)
    cols = ((torch.arange(out_w, dtype=torch.float64) + 0.5) * (in_w / out_w)).floor().long().clamp_(max=in_w - 1)
    return mask.index_select(0, rows).index_select(1, cols)


def _split_rgbt(visible, name):
    """Split 4-channel RGBT entries into visible (first 3) and infrared (4th); all or none must be 4-channel."""
    four = [tensor.shape[0] == 4 for tensor, _ in visible]
    if not any(four):
        return visible, None
    if not all(four):
        bad = four.index(False)
        raise ValueError(
            f"{name}[{four.index(True)}] is a 4-channel RGBT image but {name}[{bad}] has "
            f"{visible[bad][0].shape[0]} channel(s); a batch is either all RGBT or all visible"
        )
    return [(tensor[:3], mult) for tensor, mult in visible], [(tensor[3:], mult) for tensor, mult in visible]


def _grey(tensor):
    """1-channel infrared from a 1- or 3-channel one: the channel mean (exactly the grey value when replicated)."""
    if tensor.shape[0] == 1:
        return tensor
    if torch.equal(tensor[0], tensor[1]) and torch.equal(tensor[1], tensor[2]):
        return tensor[:1]
    return tensor.mean(dim=0, keepdim=True, dtype=torch.float32)


def _canvases(sizes, padded_hw, leading, fill, dtype):
    """Output tensors filled with ``fill``: one (B, *leading, H, W) batch and its per-image views when all images
    share a size (``padded_hw`` or a common size), else no batch and one (*leading, h, w) tensor per image."""
    common = padded_hw or (sizes[0] if len(set(sizes)) == 1 else None)
    if common is None:
        return None, [torch.full((*leading, *hw), fill, dtype=dtype) for hw in sizes]
    batch = torch.full((len(sizes), *leading, *common), fill, dtype=dtype)
    return batch, list(batch.unbind(0))


def _target_sizes_list(target_sizes, batch_size):
    sizes = target_sizes.tolist() if isinstance(target_sizes, torch.Tensor) else list(target_sizes)
    if len(sizes) != batch_size:
        raise ValueError(f"target_sizes has {len(sizes)} entries but the outputs hold {batch_size} images")
    result = []
    for index, size in enumerate(sizes):
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"target_sizes[{index}] must be (height, width) with positive sides, got {size}")
        result.append((int(size[0]), int(size[1])))
    return result


class IVGFImageProcessor(BaseImageProcessor):
    r"""
    Image processor for IVGF models: prepares paired visible and infrared images (and optionally segmentation
    maps or COCO-style detection annotations) and post-processes the model outputs.

    Args:
        do_resize (`bool`, *optional*, defaults to `False`):
            Whether to resize the images (and segmentation maps / boxes) according to `size`.
        size (`dict[str, int]`, *optional*):
            `{"height": h, "width": w}` stretches to a fixed size; `{"shortest_edge": s, "longest_edge": l}` keeps
            the aspect ratio (`longest_edge` is optional). Required when `do_resize=True`.
        resample (`int`, *optional*, defaults to `2` (`PILImageResampling.BILINEAR`)):
            Image resampling filter: 0 (nearest), 2 (bilinear) or 3 (bicubic). Segmentation maps always use nearest.
        do_rescale (`bool`, *optional*, defaults to `True`):
            Whether to multiply pixel values by `rescale_factor`. uint16 / 16-bit PIL images are first mapped to the
            8-bit range (65535 -> 255).
        rescale_factor (`float`, *optional*, defaults to `1/255`):
            Rescale factor.
        do_normalize (`bool`, *optional*, defaults to `True`):
            Whether to normalise with the per-modality mean and standard deviation.
        image_mean (`list[float]`, *optional*, defaults to ImageNet `[0.485, 0.456, 0.406]`):
            Visible mean (on the [0, 1] scale).
        image_std (`list[float]`, *optional*, defaults to ImageNet `[0.229, 0.224, 0.225]`):
            Visible standard deviation.
        ir_image_mean (`list[float]`, *optional*, defaults to `[0.425]`):
            Infrared mean (on the [0, 1] scale, as InfMAE was pretrained).
        ir_image_std (`list[float]`, *optional*, defaults to `[0.200]`):
            Infrared standard deviation.
        ir_num_channels (`int`, *optional*, defaults to 1):
            Channels of `pixel_values_ir` (the model's `num_channels_ir`): 1, or 3 to replicate the grey image.
        do_pad (`bool`, *optional*, defaults to `True`):
            Whether to zero-pad (after normalisation) at the bottom/right to the batch's largest size, rounded up to
            a multiple of `size_divisor`, and at least to 48 px per side (the smallest input IVGF takes, so that
            tiny or very elongated images still fit the model). Segmentation maps are padded with `ignore_index`.
        size_divisor (`int`, *optional*, defaults to 32):
            The padded height and width are multiples of this.
        ignore_index (`int`, *optional*, defaults to 255):
            Label value of padded segmentation pixels.

    Inputs (`__call__` / `preprocess`): `images` (visible: PIL, numpy HWC/HW, torch CHW/HW, uint8/uint16/float;
    one image or a list; grey is replicated to 3 channels; a 4-channel RGBT image with `images_ir=None` is split
    into visible and infrared), `images_ir` (grey HW/HW1/1HW or 3-channel, converted to grey by the channel mean),
    `segmentation_maps` (HW class indices) or `annotations` (COCO style, one dict per image:
    `{"image_id", "annotations": [{"bbox": [x, y, w, h], "category_id"}]}`). Either modality may be `None` (the
    output then lacks its key; the model substitutes the missing modality).

    uint8 images are resized in uint8 with rounding (as PIL and torchvision do), other dtypes in float32.

    Detection annotations: zero-size boxes and boxes entirely outside the image are dropped with a warning, boxes
    partly outside are clipped to the image; negative widths/heights, negative or non-integer category ids and
    non-finite coordinates raise a `ValueError`.
    """

    model_input_names = ["pixel_values", "pixel_values_ir"]
    valid_kwargs = IVGFImageProcessorKwargs
    # save_pretrained copies this file and writes auto_map (the folder loads as remote code)
    _auto_class = "AutoImageProcessor"

    def __init__(
        self,
        do_resize=False,
        size=None,
        resample=2,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=None,
        image_std=None,
        ir_image_mean=None,
        ir_image_std=None,
        ir_num_channels=1,
        do_pad=True,
        size_divisor=32,
        ignore_index=255,
        **kwargs,
    ):
        unknown = sorted(key for key in kwargs if key not in _META_KWARGS)
        if unknown:
            warnings.warn(f"IVGFImageProcessor ignores unknown arguments {unknown}", stacklevel=2)
        super().__init__(**{key: value for key, value in kwargs.items() if key in _META_KWARGS})
        settings = _normalise_settings(
            {
                "do_resize": do_resize,
                "size": size,
                "resample": resample,
                "do_rescale": do_rescale,
                "rescale_factor": rescale_factor,
                "do_normalize": do_normalize,
                "image_mean": IMAGENET_MEAN if image_mean is None else image_mean,
                "image_std": IMAGENET_STD if image_std is None else image_std,
                "ir_image_mean": INFRARED_MEAN if ir_image_mean is None else ir_image_mean,
                "ir_image_std": INFRARED_STD if ir_image_std is None else ir_image_std,
                "ir_num_channels": ir_num_channels,
                "do_pad": do_pad,
                "size_divisor": size_divisor,
                "ignore_index": ignore_index,
            }
        )
        for key, value in settings.items():
            setattr(self, key, value)

    def _settings(self, overrides):
        """The processor's settings with the non-None call overrides applied, normalised and validated."""
        settings = {key: getattr(self, key) for key in IVGFImageProcessorKwargs.__annotations__}
        settings.update({key: value for key, value in overrides.items() if value is not None})
        return _normalise_settings(settings)

    def __call__(
        self, images=None, images_ir=None, segmentation_maps=None, annotations=None, return_tensors=None, **kwargs
    ):
        """Same as [`~IVGFImageProcessor.preprocess`]."""
        return self.preprocess(images, images_ir, segmentation_maps, annotations, return_tensors, **kwargs)

    def preprocess(
        self,
        images=None,
        images_ir=None,
        segmentation_maps=None,
        annotations=None,
        return_tensors=None,
        do_resize=None,
        size=None,
        resample=None,
        do_rescale=None,
        rescale_factor=None,
        do_normalize=None,
        image_mean=None,
        image_std=None,
        ir_image_mean=None,
        ir_image_std=None,
        ir_num_channels=None,
        do_pad=None,
        size_divisor=None,
        ignore_index=None,
    ):
        """Prepare a batch of visible and/or infrared images, with segmentation maps or detection annotations.

        Returns a `BatchFeature` with `pixel_values` (B, 3, H, W) float32, `pixel_values_ir` (B, ir_num_channels,
        H, W) float32 (each only when that modality is given), and `labels`: (B, H, W) int64 for segmentation maps,
        or a list of dicts {"class_labels" (n,) int64, "boxes" (n, 4) float32 normalised (cx, cy, w, h) relative to
        the padded H, W, "orig_size", "size" (resized, before padding), "image_id"} for annotations.
        `return_tensors="pt"` stacks the batch; `None` returns lists of per-image tensors. Keyword arguments
        override the processor's settings for this call.
        """
        overrides = {key: value for key, value in locals().items() if key in IVGFImageProcessorKwargs.__annotations__}
        s = self._settings(overrides)
        if return_tensors not in (None, "pt"):
            raise ValueError(f"return_tensors must be None or 'pt', got {return_tensors!r}")
        if images is None and images_ir is None:
            raise ValueError("Pass `images` (visible), `images_ir` (infrared) or both; both are None")
        if segmentation_maps is not None and annotations is not None:
            raise ValueError("Pass either segmentation_maps or annotations, not both")

        visible = self._load_images(images, "images")
        infrared = self._load_images(images_ir, "images_ir")
        if visible is not None and infrared is None:
            visible, infrared = _split_rgbt(visible, "images")
        self._check_channels(visible, infrared)
        self._check_pairs(visible, infrared)

        reference = visible if visible is not None else infrared
        original_sizes = [tuple(tensor.shape[-2:]) for tensor, _ in reference]
        resized_sizes = [
            get_resize_output_size(h, w, s["size"]) if s["do_resize"] else (h, w) for h, w in original_sizes
        ]
        padded = self._padded_size(resized_sizes, s, return_tensors)

        outputs = {}  # key -> (batch tensor or None, per-image tensors)
        if visible is not None:
            outputs["pixel_values"] = self._process_stream(
                visible, resized_sizes, padded, s, s["image_mean"], s["image_std"], 3, "images"
            )
        if infrared is not None:
            infrared = [(_grey(tensor), multiplier) for tensor, multiplier in infrared]
            outputs["pixel_values_ir"] = self._process_stream(
                infrared,
                resized_sizes,
                padded,
                s,
                s["ir_image_mean"],
                s["ir_image_std"],
                s["ir_num_channels"],
                "images_ir",
            )
        if segmentation_maps is not None:
            outputs["labels"] = self._process_masks(segmentation_maps, original_sizes, resized_sizes, padded, s)
        data = {key: batch if return_tensors == "pt" else per_image for key, (batch, per_image) in outputs.items()}
        if annotations is not None:
            data["labels"] = self._process_annotations(annotations, original_sizes, resized_sizes, padded)
        return BatchFeature(data=data)

    @staticmethod
    def _load_images(images, name):
        items = _as_list(images, name, batch_ndim=4)
        if items is None:
            return None
        return [_image_to_tensor(item, name, index) for index, item in enumerate(items)]

    @staticmethod
    def _check_channels(visible, infrared):
        for entries, name, allowed in ((visible, "images", (1, 3)), (infrared, "images_ir", (1, 3))):
            for index, (tensor, _) in enumerate(entries or []):
                if tensor.shape[0] not in allowed:
                    hint = (
                        " (a 4-channel RGBT image is only split when images_ir is None)"
                        if name == "images" and tensor.shape[0] == 4
                        else ""
                    )
                    raise ValueError(
                        f"{name}[{index}] has {tensor.shape[0]} channels (shape {tuple(tensor.shape)}); expected "
                        f"{' or '.join(map(str, allowed))}{hint}"
                    )

    @staticmethod
    def _check_pairs(visible, infrared):
        if visible is None or infrared is None:
            return
        if len(visible) != len(infrared):
            raise ValueError(f"Got {len(visible)} visible image(s) but {len(infrared)} infrared image(s)")
        for index, ((rgb, _), (ir, _)) in enumerate(zip(visible, infrared, strict=True)):
            if rgb.shape[-2:] != ir.shape[-2:]:
                raise ValueError(
                    f"Pair {index}: visible image is {tuple(rgb.shape[-2:])} (H, W) but infrared image is "
                    f"{tuple(ir.shape[-2:])}; pairs must be registered to the same size"
                )

    @staticmethod
    def _padded_size(resized_sizes, s, return_tensors):
        max_h = max(h for h, _ in resized_sizes)
        max_w = max(w for _, w in resized_sizes)
        if s["do_pad"]:
            divisor = s["size_divisor"]
            max_h, max_w = max(max_h, _MIN_PADDED_SIDE), max(max_w, _MIN_PADDED_SIDE)
            return math.ceil(max_h / divisor) * divisor, math.ceil(max_w / divisor) * divisor
        if return_tensors == "pt" and len(set(resized_sizes)) > 1:
            raise ValueError(
                f"Images of different sizes {sorted(set(resized_sizes))} cannot be stacked with do_pad=False; "
                "use do_pad=True, do_resize with a fixed size, or return_tensors=None"
            )
        return None

    @staticmethod
    def _process_stream(entries, resized_sizes, padded, s, mean, std, num_channels, name):
        """Resize, rescale, normalise and zero-pad one modality into (num_channels, H, W) float32 tensors.

        Returns ``(batch, per_image)`` as `_canvases` does. Images are copied once into the output (grey broadcast to
        ``num_channels``), then rescaled and normalised in place by one affine map over the whole batch.
        """
        mode = _RESAMPLE_MODES[s["resample"]]
        batch, outputs = _canvases(resized_sizes, padded, (num_channels,), 0.0, torch.float32)
        for index, ((tensor, multiplier), (height, width), out) in enumerate(
            zip(entries, resized_sizes, outputs, strict=True)
        ):
            if s["do_rescale"] and tensor.is_floating_point() and float(tensor.max()) <= 1.0:
                warnings.warn(
                    f"{name}[{index}] is a float image with values in [0, 1] and do_rescale=True multiplies it by "
                    f"{s['rescale_factor']}; pass do_rescale=False if it is already rescaled",
                    stacklevel=3,
                )
            valid = out[:, :height, :width]
            valid.copy_(_resize_image(tensor, (height, width), mode))
            if s["do_rescale"] and multiplier != 1.0:
                valid.mul_(multiplier)
        factor = s["rescale_factor"] if s["do_rescale"] else 1.0
        mean_t = torch.tensor(mean if s["do_normalize"] else [0.0], dtype=torch.float64).view(-1, 1, 1)
        std_t = torch.tensor(std if s["do_normalize"] else [1.0], dtype=torch.float64).view(-1, 1, 1)
        scale, shift = (factor / std_t).float(), (-mean_t / std_t).float()
        for target in [batch] if batch is not None else outputs:
            target.mul_(scale).add_(shift)
        for (height, width), out in zip(resized_sizes, outputs, strict=True):  # padding is 0 after normalisation
            out[:, height:].zero_()
            out[:, :, width:].zero_()
        return batch, outputs

    @staticmethod
    def _process_masks(segmentation_maps, original_sizes, resized_sizes, padded, s):
        """Nearest-resize and pad (with ``ignore_index``) the label maps; returns ``(batch, per_image)`` int64."""
        single_hw1 = isinstance(segmentation_maps, np.ndarray) and segmentation_maps.shape[-1:] == (1,)
        masks = [segmentation_maps] if single_hw1 else _as_list(segmentation_maps, "segmentation_maps", batch_ndim=3)
        if len(masks) != len(original_sizes):
            raise ValueError(f"Got {len(masks)} segmentation map(s) for {len(original_sizes)} image(s)")
        batch, outputs = _canvases(resized_sizes, padded, (), s["ignore_index"], torch.int64)
        for index, (item, original, (height, width), out) in enumerate(
            zip(masks, original_sizes, resized_sizes, outputs, strict=True)
        ):
            mask = _mask_to_tensor(item, index)
            if tuple(mask.shape) != tuple(original):
                raise ValueError(
                    f"segmentation_maps[{index}] is {tuple(mask.shape)} (H, W) but its image is {tuple(original)}"
                )
            out[:height, :width].copy_(_resize_mask(mask, (height, width)))
        return batch, outputs

    @staticmethod
    def _process_annotations(annotations, original_sizes, resized_sizes, padded):
        if isinstance(annotations, dict):
            annotations = [annotations]
        if not isinstance(annotations, (list, tuple)):
            raise TypeError(f"annotations must be a dict or a list of dicts (one per image), got {type(annotations)}")
        if len(annotations) != len(original_sizes):
            raise ValueError(f"Got {len(annotations)} annotation dict(s) for {len(original_sizes)} image(s)")
        return [
            _annotation_to_target(annotation, index, original, resized, padded or resized)
            for index, (annotation, original, resized) in enumerate(
                zip(annotations, original_sizes, resized_sizes, strict=True)
            )
        ]

    def _resized_size(self, height, width):
        return get_resize_output_size(height, width, self.size) if self.do_resize else (height, width)

    def post_process_semantic_segmentation(self, outputs, target_sizes=None):
        """Turn segmentation logits into label maps.

        Args:
            outputs: model output with `.logits` (B, C, H, W) at the padded input size, or that tensor.
            target_sizes (`list[tuple[int, int]]` or tensor (B, 2), *optional*): original (height, width) of each
                image. The valid region (the resized image, recomputed from this size with the processor's resize
                rule) is cropped from the padded logits and resized bilinearly to the original size.

        Returns:
            `list[torch.LongTensor]`: one (height, width) label map per image (at the logits size without
            `target_sizes`).
        """
        logits = outputs.logits if hasattr(outputs, "logits") else outputs
        if not isinstance(logits, torch.Tensor) or logits.ndim != 4:
            raise ValueError(f"Expected logits of shape (B, C, H, W), got {getattr(logits, 'shape', type(logits))}")
        if target_sizes is None:
            return list(logits.argmax(dim=1).unbind(0))
        results = []
        for index, (height, width) in enumerate(_target_sizes_list(target_sizes, logits.shape[0])):
            valid_h, valid_w = self._resized_size(height, width)
            if valid_h > logits.shape[-2] or valid_w > logits.shape[-1]:
                raise ValueError(
                    f"Image {index}: target size {(height, width)} resizes to {(valid_h, valid_w)}, larger than the "
                    f"logits {tuple(logits.shape[-2:])}; logits must be at the padded input size"
                )
            valid = logits[index : index + 1, :, :valid_h, :valid_w]
            if (valid_h, valid_w) != (height, width):
                valid = F.interpolate(valid.float(), size=(height, width), mode="bilinear", align_corners=False)
            results.append(valid[0].argmax(dim=0))
        return results

    def post_process_object_detection(self, outputs, threshold=0.5, target_sizes=None):
        """Filter detections by score and map their boxes back to the original images.

        Args:
            outputs: model output with `.detections`, or that list: one dict per image with "boxes" (n, 4) absolute
                (x0, y0, x1, y1) in the `pixel_values` frame, "scores" (n,) and "labels" (n,) (0-based).
            threshold (`float`, *optional*, defaults to 0.5): keep detections with score > threshold.
            target_sizes (`list[tuple[int, int]]` or tensor (B, 2), *optional*): original (height, width) of each
                image; boxes are rescaled with the processor's resize rule and clipped to the image. Without it the
                boxes stay in the `pixel_values` frame.

        Returns:
            `list[dict]`: per image {"scores" (k,), "labels" (k,) int64, "boxes" (k, 4) absolute xyxy}.
        """
        detections = getattr(outputs, "detections", outputs)
        if not isinstance(detections, (list, tuple)):
            raise TypeError(f"Expected outputs.detections or a list of per-image dicts, got {type(detections)}")
        sizes = None if target_sizes is None else _target_sizes_list(target_sizes, len(detections))
        results = []
        for index, detection in enumerate(detections):
            missing = {"boxes", "scores", "labels"} - set(detection)
            if missing:
                raise ValueError(f"detections[{index}] lacks the keys {sorted(missing)}")
            boxes, scores, labels = detection["boxes"], detection["scores"], detection["labels"]
            if boxes.ndim != 2 or boxes.shape[-1] != 4 or not (len(boxes) == len(scores) == len(labels)):
                raise ValueError(
                    f"detections[{index}]: boxes {tuple(boxes.shape)} must be (n, 4) with n scores and labels "
                    f"(got {len(scores)} scores, {len(labels)} labels)"
                )
            keep = scores > threshold
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            if sizes is not None:
                height, width = sizes[index]
                valid_h, valid_w = self._resized_size(height, width)
                scale = boxes.new_tensor([width / valid_w, height / valid_h, width / valid_w, height / valid_h])
                limit = boxes.new_tensor([width, height, width, height])
                boxes = torch.minimum((boxes * scale).clamp(min=0), limit)
            results.append({"scores": scores, "labels": labels.long(), "boxes": boxes})
        return results


def _annotation_to_target(annotation, index, original_hw, resized_hw, padded_hw):
    """COCO annotations of one image -> {"class_labels", "boxes" (normalised cxcywh), "orig_size", "size", ...}."""
    if not isinstance(annotation, dict) or "annotations" not in annotation:
        raise ValueError(
            f"annotations[{index}] must be a dict with an 'annotations' list (COCO style), got {type(annotation)}"
        )
    objects = annotation["annotations"]
    if not isinstance(objects, (list, tuple)):
        raise ValueError(f"annotations[{index}]['annotations'] must be a list of dicts, got {type(objects)}")
    for number, obj in enumerate(objects):
        if not isinstance(obj, dict) or "bbox" not in obj or "category_id" not in obj:
            raise ValueError(f"annotations[{index}]['annotations'][{number}] needs the keys 'bbox' and 'category_id'")
        if len(obj["bbox"]) != 4:
            raise ValueError(
                f"annotations[{index}]['annotations'][{number}]['bbox'] must be [x, y, w, h], got {obj['bbox']}"
            )
        category = obj["category_id"]
        if not isinstance(category, numbers.Integral) or isinstance(category, bool) or category < 0:
            raise ValueError(
                f"annotations[{index}]['annotations'][{number}]['category_id'] must be a non-negative integer, "
                f"got {category!r}"
            )
    boxes = torch.tensor([[float(v) for v in obj["bbox"]] for obj in objects], dtype=torch.float64).reshape(-1, 4)
    classes = torch.tensor([int(obj["category_id"]) for obj in objects], dtype=torch.int64)
    if not torch.isfinite(boxes).all():
        raise ValueError(f"annotations[{index}] holds non-finite box coordinates")
    negative = (boxes[:, 2:] < 0).any(dim=1)
    if negative.any():
        number = int(negative.nonzero()[0])
        raise ValueError(
            f"annotations[{index}]['annotations'][{number}]['bbox'] = {objects[number]['bbox']} has a negative width "
            "or height; boxes must be COCO [x, y, w, h]"
        )
    height, width = original_hw
    corners = torch.cat([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], dim=1)
    clipped = torch.minimum(corners.clamp(min=0), corners.new_tensor([width, height, width, height]))
    zero_size = (boxes[:, 2:] == 0).any(dim=1)
    outside = ~zero_size & ((clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1]))
    for mask, reason in ((zero_size, "zero-size"), (outside, "entirely outside the image")):
        if mask.any():
            warnings.warn(
                f"annotations[{index}]: dropped {int(mask.sum())} {reason} box(es) at positions "
                f"{mask.nonzero().flatten().tolist()}",
                stacklevel=4,
            )
    keep = ~(zero_size | outside)
    clipped, classes = clipped[keep], classes[keep]
    resized_h, resized_w = resized_hw
    padded_h, padded_w = padded_hw
    # original pixels -> resized pixels -> fraction of the padded image
    resized = clipped * clipped.new_tensor([resized_w / width, resized_h / height] * 2)
    boxes = xyxy_to_normalised_cxcywh(resized, padded_h, padded_w).to(torch.float32)
    target = {
        "class_labels": classes,
        "boxes": boxes,
        "orig_size": torch.tensor(original_hw, dtype=torch.int64),
        "size": torch.tensor(resized_hw, dtype=torch.int64),
    }
    image_id = annotation.get("image_id")
    if image_id is not None:
        target["image_id"] = torch.tensor([image_id]) if isinstance(image_id, numbers.Integral) else image_id
    return target
