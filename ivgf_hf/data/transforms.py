"""Joint RGB-T transforms for training and evaluation, and the collate functions.

The transforms take the batches ``datasets`` hands to ``Dataset.with_transform`` (a dict of lists with the
loaders' columns ``visible``, ``infrared`` and ``label`` or ``objects``) and return, per sample:

* ``pixel_values``: float (3, H, W), the visible image normalised with ``image_mean`` / ``image_std``;
* ``pixel_values_ir``: float (1, H, W), the infrared image normalised with ``ir_image_mean`` / ``ir_image_std``;
* ``labels``: segmentation, LongTensor (H, W) with 255 = ignore (also where padded); detection,
  ``{"class_labels": LongTensor[n], "boxes": FloatTensor[n, 4]}`` with boxes as normalised (cx, cy, w, h)
  relative to the output image.

The mean / std come from ``processor`` (only its ``image_mean``, ``image_std``, ``ir_image_mean``,
``ir_image_std`` attributes are read) or default to ImageNet for the visible image and 0.425 / 0.200 for the
infrared one (0-1 scale). Geometric steps use ``torchvision.transforms.v2`` on ``tv_tensors`` so both images,
the mask and the boxes get the same random parameters; padding fills images with 0 after normalisation (their
mean) and masks with 255.

Training order: random scale + crop (one resampling) -> horizontal flip -> photometric distortion (visible only)
-> cutout&mix (on [0, 1] intensities) -> normalisation -> padding to the crop size.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as nnf
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ..modeling.image_processing_ivgf import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INFRARED_MEAN,
    INFRARED_STD,
    xyxy_to_normalised_cxcywh,
)
from .classes import IGNORE_INDEX
from .cutout_mix import CutoutMix, CutoutMixConfig

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INFRARED_MEAN",
    "INFRARED_STD",
    "Normalization",
    "RandomScaleCrop",
    "PhotometricDistortion",
    "colour_matrix",
    "SegmentationTrainTransform",
    "SegmentationEvalTransform",
    "DetectionTrainTransform",
    "DetectionEvalTransform",
    "collate_segmentation",
    "collate_detection",
]


def _values(value, count, name):
    values = tuple(float(v) for v in np.atleast_1d(np.asarray(value, dtype=np.float64)))
    if len(values) != count:
        raise ValueError(f"{name} must have {count} value(s), got {values}")
    return values


class Normalization:
    """Mean / std of both modalities (0-1 scale): from ``processor``'s attributes, else the defaults."""

    def __init__(self, processor=None):
        def get(key, default):
            value = getattr(processor, key, None) if processor is not None else None
            return default if value is None else value

        self.visible_mean = _values(get("image_mean", IMAGENET_MEAN), 3, "image_mean")
        self.visible_std = _values(get("image_std", IMAGENET_STD), 3, "image_std")
        self.infrared_mean = _values(get("ir_image_mean", INFRARED_MEAN), 1, "ir_image_mean (1-channel infrared)")
        self.infrared_std = _values(get("ir_image_std", INFRARED_STD), 1, "ir_image_std (1-channel infrared)")

    def __call__(self, visible, infrared):
        """Float images in [0, 1] -> normalised ``(visible, infrared)``."""
        return F.normalize(visible, self.visible_mean, self.visible_std), F.normalize(
            infrared, self.infrared_mean, self.infrared_std
        )


def _image_tensor(image, channels):
    """PIL image / array / tensor -> ``tv_tensors.Image`` uint8 (channels, H, W)."""
    if isinstance(image, torch.Tensor):
        tensor = image if image.dim() == 3 else image[None]
    else:
        array = np.array(image)
        tensor = torch.from_numpy(array[..., None] if array.ndim == 2 else array).permute(2, 0, 1)
    if tensor.shape[0] != channels:
        raise ValueError(f"expected an image with {channels} channel(s), got shape {tuple(tensor.shape)}")
    return tv_tensors.Image(tensor)


def _mask_tensor(label):
    array = label if isinstance(label, torch.Tensor) else torch.from_numpy(np.array(label))
    return tv_tensors.Mask(array.squeeze(0) if array.dim() == 3 else array)


def _first(flat_inputs, kind):
    return next((x for x in flat_inputs if isinstance(x, kind)), None)


class RandomScaleCrop(v2.Transform):
    """Random rescale by a factor from ``scale_range``, then a random crop of at most ``crop_size``, in one
    resampling step (only the cropped region is resized, so a 2x zoom costs no more than the output).

    ``fit=False`` (segmentation) scales relative to the input size; ``fit=True`` (detection) relative to the size
    that fits the image inside the crop. With a mask present, up to 10 crops are tried until no class covers
    ``cat_max_ratio`` or more of the crop's labelled pixels (mmseg's rule, ``ignore_index`` excluded, counted on a
    subsample of the crop). Images use bilinear (antialiased) resampling, masks nearest, boxes their exact
    transform. The output is ``min(crop, scaled size)`` per side; pad afterwards.
    """

    def __init__(self, crop_size, scale_range=(0.5, 2.0), cat_max_ratio=1.0, ignore_index=IGNORE_INDEX, fit=False):
        super().__init__()
        self.crop_size = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
        self.scale_range = tuple(scale_range)
        if not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"scale_range must be (min, max) with 0 < min <= max, got {scale_range}")
        self.cat_max_ratio = cat_max_ratio
        self.ignore_index = ignore_index
        self.fit = fit

    def _region(self, height, width, scale):
        crop_h, crop_w = self.crop_size
        scaled_h, scaled_w = max(round(height * scale), 1), max(round(width * scale), 1)
        out_h, out_w = min(crop_h, scaled_h), min(crop_w, scaled_w)
        top_s = int(torch.randint(0, scaled_h - out_h + 1, ()))
        left_s = int(torch.randint(0, scaled_w - out_w + 1, ()))
        top, left = min(int(top_s / scale), height - 1), min(int(left_s / scale), width - 1)
        region_h = min(max(round(out_h / scale), 1), height - top)
        region_w = min(max(round(out_w / scale), 1), width - left)
        return dict(top=top, left=left, height=region_h, width=region_w, size=[out_h, out_w])

    def _balanced(self, mask, region):
        """mmseg's test, on a regular subsample of the crop of at most about 16k pixels."""
        stride = max(1, int(math.sqrt(region["height"] * region["width"] / 16384)))
        rows = slice(region["top"], region["top"] + region["height"], stride)
        cols = slice(region["left"], region["left"] + region["width"], stride)
        counts = torch.bincount(mask[..., rows, cols].reshape(-1).long(), minlength=self.ignore_index + 1)
        counts[self.ignore_index] = 0
        present = counts[counts > 0]
        return len(present) > 1 and float(present.max()) / float(present.sum()) < self.cat_max_ratio

    def make_params(self, flat_inputs):
        image = _first(flat_inputs, tv_tensors.Image)
        height, width = image.shape[-2:]
        scale = float(torch.empty(()).uniform_(*self.scale_range))
        if self.fit:
            scale *= min(self.crop_size[0] / height, self.crop_size[1] / width)
        mask = _first(flat_inputs, tv_tensors.Mask)
        region = self._region(height, width, scale)
        if mask is not None and self.cat_max_ratio < 1.0:
            for _ in range(9):
                if self._balanced(mask, region):
                    break
                region = self._region(height, width, scale)
        return region

    def transform(self, inpt, params):
        if isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask, tv_tensors.BoundingBoxes)):
            return F.resized_crop(inpt, **params, antialias=True)
        return inpt


# RGB <-> YIQ (NTSC); a hue shift is a rotation of the (I, Q) chroma plane.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)
_LUMA = _RGB_TO_YIQ[0]


def colour_matrix(saturation=1.0, hue_shift=0.0):
    """3x3 RGB matrix scaling saturation (blend with the BT.601 grey) then rotating hue by ``hue_shift`` turns."""
    eye = torch.eye(3)
    saturate = saturation * eye + (1.0 - saturation) * _LUMA[None, :].expand(3, 3)
    angle = 2.0 * math.pi * hue_shift
    c, s = math.cos(angle), math.sin(angle)
    rotate = torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    return _YIQ_TO_RGB @ rotate @ _RGB_TO_YIQ @ saturate


class PhotometricDistortion:
    """mmseg-style photometric distortion of a visible float image (3, H, W) in [0, 1].

    Each step has probability 0.5: brightness (add up to +-``brightness_delta``/255), contrast (multiply by a
    factor from ``contrast_range``), saturation (factor from ``saturation_range``) and hue (shift by up to
    +-``hue_delta`` of OpenCV's 180-step hue circle, i.e. +-36 degrees for 18). Contrast runs first or last with
    equal chance, as in mmseg. Saturation and hue are applied together as one 3x3 colour matrix; the hue shift is
    a rotation of the YIQ chroma plane (a linear stand-in for mmseg's HSV shift, about 30x cheaper).
    """

    def __init__(self, brightness_delta=32, contrast_range=(0.5, 1.5), saturation_range=(0.5, 1.5), hue_delta=18):
        self.brightness_delta = brightness_delta / 255.0
        self.contrast_range = contrast_range
        self.saturation_range = saturation_range
        self.hue_shift = hue_delta / 180.0  # in turns: OpenCV's hue circle has 180 steps

    @staticmethod
    def _coin():
        return bool(torch.rand(()) < 0.5)

    @staticmethod
    def _uniform(low, high):
        return float(torch.empty(()).uniform_(low, high))

    def _contrast(self, image):
        return (image * self._uniform(*self.contrast_range)).clamp_(0, 1) if self._coin() else image

    def __call__(self, image):
        if self._coin():
            image = (image + self._uniform(-self.brightness_delta, self.brightness_delta)).clamp_(0, 1)
        contrast_first = self._coin()
        if contrast_first:
            image = self._contrast(image)
        saturation = self._uniform(*self.saturation_range) if self._coin() else 1.0
        hue = self._uniform(-self.hue_shift, self.hue_shift) if self._coin() else 0.0
        if saturation != 1.0 or hue != 0.0:
            matrix = colour_matrix(saturation, hue).to(image.dtype)
            image = torch.einsum("ij,jhw->ihw", matrix, image).clamp_(0, 1)
        if not contrast_first:
            image = self._contrast(image)
        return image


def _to_unit(image):
    return image.float().div_(255.0)


def _pad_to(tensor, height, width, value):
    """Pad the last two dims at the bottom / right to (height, width)."""
    pad_h, pad_w = height - tensor.shape[-2], width - tensor.shape[-1]
    if pad_h <= 0 and pad_w <= 0:
        return tensor
    return nnf.pad(tensor, (0, max(pad_w, 0), 0, max(pad_h, 0)), value=value)


def _batch_columns(batch, keys):
    missing = [key for key in keys if key not in batch]
    if missing:
        raise KeyError(f"the batch has no column(s) {missing}; got {sorted(batch)}")
    return [batch[key] for key in keys]


class _PairTransform:
    """Shared parts: normalisation, optional photometric distortion and cutout&mix, batch handling.

    Subclasses name their target column (``target_column``) and implement ``apply(visible, infrared, target)``
    for one sample.
    """

    target_column = None

    def __init__(self, processor=None, photometric=False, cma=None):
        self.normalization = Normalization(processor)
        self.photometric = PhotometricDistortion() if photometric is True else (photometric or None)
        self.cutout_mix = None
        if cma is not None and cma is not False:
            n = self.normalization
            self.cutout_mix = CutoutMix(CutoutMixConfig() if cma is True else cma, n.visible_mean, n.infrared_mean)

    def _intensities(self, visible, infrared):
        """uint8 tensors -> augmented, normalised float tensors."""
        visible, infrared = _to_unit(visible.as_subclass(torch.Tensor)), _to_unit(infrared.as_subclass(torch.Tensor))
        if self.photometric is not None:
            visible = self.photometric(visible)
        if self.cutout_mix is not None:
            visible, infrared = self.cutout_mix(visible, infrared)
        return self.normalization(visible, infrared)

    def __call__(self, batch):
        """Transform a ``datasets`` batch (dict of lists) into lists of model inputs."""
        visible, infrared, targets = _batch_columns(batch, ["visible", "infrared", self.target_column])
        out = {"pixel_values": [], "pixel_values_ir": [], "labels": []}
        for v, i, t in zip(visible, infrared, targets):
            sample = self.apply(v, i, t)
            for key in out:
                out[key].append(sample[key])
        return out


class SegmentationTrainTransform(_PairTransform):
    """Training transform for segmentation (the paper's 512 x 512 crops). See the module docstring.

    Args:
        crop_size: output side (int) or (height, width).
        scale_range: random rescale factors relative to the input size.
        cat_max_ratio: mmseg's crop rule (1.0 disables it).
        hflip_prob: probability of a horizontal flip.
        photometric: ``True`` for :class:`PhotometricDistortion` defaults, an instance, or ``False``.
        cma: :class:`CutoutMixConfig`, ``True`` (default) for its defaults, or ``None`` / ``False`` for none.
        processor: object with ``image_mean``, ``image_std``, ``ir_image_mean``, ``ir_image_std`` (optional).
        ignore_index: label value of ignored / padded pixels.
    """

    target_column = "label"

    def __init__(
        self,
        crop_size=512,
        scale_range=(0.5, 2.0),
        cat_max_ratio=0.75,
        hflip_prob=0.5,
        photometric=True,
        cma=True,
        processor=None,
        ignore_index=IGNORE_INDEX,
    ):
        super().__init__(processor, photometric, cma)
        self.crop_size = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
        self.ignore_index = ignore_index
        self.geometric = v2.Compose(
            [
                RandomScaleCrop(self.crop_size, scale_range, cat_max_ratio, ignore_index),
                v2.RandomHorizontalFlip(hflip_prob),
            ]
        )

    def apply(self, visible, infrared, label):
        """One sample (PIL images or tensors) -> ``{"pixel_values", "pixel_values_ir", "labels"}``."""
        v, i, m = self.geometric(_image_tensor(visible, 3), _image_tensor(infrared, 1), _mask_tensor(label))
        v, i = self._intensities(v, i)
        h, w = self.crop_size
        return {
            "pixel_values": _pad_to(v, h, w, 0.0),
            "pixel_values_ir": _pad_to(i, h, w, 0.0),
            "labels": _pad_to(m.as_subclass(torch.Tensor).long(), h, w, self.ignore_index),
        }


def _eval_size(height, width, size):
    """Output (h, w): ``size`` None keeps the input, an int sets the longer side, a pair is exact."""
    if size is None:
        return height, width
    if isinstance(size, int):
        scale = size / max(height, width)
        return max(round(height * scale), 1), max(round(width * scale), 1)
    return tuple(size)


class SegmentationEvalTransform(_PairTransform):
    """Evaluation transform for segmentation: optional resize (``size``: None, longer side, or (h, w); masks
    nearest), normalisation, padding at the bottom / right to a multiple of ``size_divisor`` (labels 255)."""

    target_column = "label"

    def __init__(self, processor=None, size=None, size_divisor=32, ignore_index=IGNORE_INDEX):
        super().__init__(processor)
        self.size, self.size_divisor, self.ignore_index = size, size_divisor, ignore_index

    def apply(self, visible, infrared, label):
        v, i, m = _image_tensor(visible, 3), _image_tensor(infrared, 1), _mask_tensor(label)
        size = list(_eval_size(*v.shape[-2:], self.size))
        if size != list(v.shape[-2:]):
            v, i, m = (F.resize(x, size, antialias=True) for x in (v, i, m))
        v, i = self._intensities(v, i)
        h, w = (math.ceil(s / self.size_divisor) * self.size_divisor for s in size)
        return {
            "pixel_values": _pad_to(v, h, w, 0.0),
            "pixel_values_ir": _pad_to(i, h, w, 0.0),
            "labels": _pad_to(m.as_subclass(torch.Tensor).long(), h, w, self.ignore_index),
        }


def _boxes(objects, height, width):
    bbox = torch.as_tensor(objects["bbox"], dtype=torch.float32).reshape(-1, 4)
    classes = torch.as_tensor(objects["category"], dtype=torch.int64).reshape(-1)
    return tv_tensors.BoundingBoxes(bbox, format="XYXY", canvas_size=(height, width)), classes


def _detection_output(v, i, boxes, classes, height, width):
    return {
        "pixel_values": _pad_to(v, height, width, 0.0),
        "pixel_values_ir": _pad_to(i, height, width, 0.0),
        "labels": {
            "class_labels": classes,
            "boxes": xyxy_to_normalised_cxcywh(boxes.as_subclass(torch.Tensor).float(), height, width),
        },
    }


class DetectionTrainTransform(_PairTransform):
    """Training transform for detection (the paper's 896 x 896 inputs): random scale relative to the size that
    fits the image in the crop, random crop, horizontal flip, photometric distortion (visible), cutout&mix,
    normalisation, padding. Boxes are clipped to the crop; those left thinner than ``min_box_size`` pixels are
    dropped with their labels.

    Args:
        crop_size: output side (int) or (height, width).
        scale_range: random rescale factors relative to the size that fits the image inside the crop.
        hflip_prob, photometric, cma, processor: as in :class:`SegmentationTrainTransform`.
        min_box_size: smallest box side (pixels, output scale) that is kept.
    """

    target_column = "objects"

    def __init__(
        self,
        crop_size=896,
        scale_range=(0.5, 2.0),
        hflip_prob=0.5,
        photometric=True,
        cma=True,
        processor=None,
        min_box_size=1.0,
    ):
        super().__init__(processor, photometric, cma)
        self.crop_size = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
        self.geometric = v2.Compose(
            [
                RandomScaleCrop(self.crop_size, scale_range, fit=True),
                v2.RandomHorizontalFlip(hflip_prob),
                v2.ClampBoundingBoxes(),
                v2.SanitizeBoundingBoxes(min_size=min_box_size, min_area=min_box_size**2),
            ]
        )

    def apply(self, visible, infrared, objects):
        v, i = _image_tensor(visible, 3), _image_tensor(infrared, 1)
        boxes, classes = _boxes(objects, *v.shape[-2:])
        out = self.geometric({"visible": v, "infrared": i, "boxes": boxes, "labels": classes})
        v, i = self._intensities(out["visible"], out["infrared"])
        return _detection_output(v, i, out["boxes"], out["labels"], *self.crop_size)


class DetectionEvalTransform(_PairTransform):
    """Evaluation transform for detection: optional resize (``size``: None, longer side, or (h, w)), then
    normalisation and padding at the bottom / right to a multiple of ``size_divisor``; boxes are normalised to the
    padded output."""

    target_column = "objects"

    def __init__(self, processor=None, size=None, size_divisor=32):
        super().__init__(processor)
        self.size, self.size_divisor = size, size_divisor

    def apply(self, visible, infrared, objects):
        v, i = _image_tensor(visible, 3), _image_tensor(infrared, 1)
        boxes, classes = _boxes(objects, *v.shape[-2:])
        size = list(_eval_size(*v.shape[-2:], self.size))
        if size != list(v.shape[-2:]):
            v, i, boxes = (F.resize(x, size, antialias=True) for x in (v, i, boxes))
        v, i = self._intensities(v, i)
        h, w = (math.ceil(s / self.size_divisor) * self.size_divisor for s in size)
        return _detection_output(v, i, boxes, classes, h, w)


def _stack_padded(tensors, value):
    """Stack (..., H, W) tensors, padding each at the bottom / right to the largest size."""
    height = max(t.shape[-2] for t in tensors)
    width = max(t.shape[-1] for t in tensors)
    return torch.stack([_pad_to(t, height, width, value) for t in tensors])


def collate_segmentation(batch, ignore_index=IGNORE_INDEX):
    """List of transformed samples -> ``{"pixel_values": (B, 3, H, W), "pixel_values_ir": (B, 1, H, W),
    "labels": (B, H, W)}``; samples of different sizes are padded (images 0, labels ``ignore_index``)."""
    out = {
        "pixel_values": _stack_padded([s["pixel_values"] for s in batch], 0.0),
        "pixel_values_ir": _stack_padded([s["pixel_values_ir"] for s in batch], 0.0),
    }
    if "labels" in batch[0]:
        out["labels"] = _stack_padded([s["labels"] for s in batch], ignore_index)
    return out


def collate_detection(batch):
    """List of transformed samples -> stacked ``pixel_values`` / ``pixel_values_ir`` and a list of label dicts.

    Samples of different sizes are padded at the bottom / right and their normalised boxes rescaled to the
    padded size.
    """
    visible = _stack_padded([s["pixel_values"] for s in batch], 0.0)
    out = {"pixel_values": visible, "pixel_values_ir": _stack_padded([s["pixel_values_ir"] for s in batch], 0.0)}
    if "labels" in batch[0]:
        height, width = visible.shape[-2:]
        labels = []
        for sample in batch:
            h, w = sample["pixel_values"].shape[-2:]
            scale = torch.tensor([w / width, h / height, w / width, h / height])
            labels.append({**sample["labels"], "boxes": sample["labels"]["boxes"] * scale})
        out["labels"] = labels
    return out
