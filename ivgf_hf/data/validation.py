"""Checking RGB-T samples while they are loaded, and turning them into ``datasets`` rows.

A sample is a visible / infrared pair (two files, or one 4-channel RGB+T file) with an optional label mask and
an optional box annotation. :func:`build_split` checks every sample in a thread pool: readable and undamaged
images of at least :data:`MIN_IMAGE_SIDE` px per side, equal sizes, label ids inside the class set (255 = ignore is
allowed), boxes inside the image and not empty. Each problem is a :class:`SkippedSample` ``(file, reason)``; the
caller either raises :class:`RGBTSampleError` or skips the sample.
"""

from __future__ import annotations

import io
import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value
from datasets import Image as ImageFeature
from PIL import Image

from ..modeling.image_processing_ivgf import SIXTEEN_BIT_MODES
from .classes import IGNORE_INDEX

__all__ = [
    "SkippedSample",
    "RGBTSampleError",
    "RGBTLayoutError",
    "RGBTDatasetDict",
    "Sample",
    "AnnotationSpec",
    "condition_from_name",
    "build_split",
    "finish",
    "check_errors_argument",
    "MIN_IMAGE_SIDE",
]

logger = logging.getLogger(__name__)

MIN_IMAGE_SIDE = 16
"""Images with a side below this (less than one token of the encoders' stride-16 stage) are broken samples."""

_VISIBLE_MODES = ("RGB", "RGBA", "L", "P", "LA", "RGBX")
_INFRARED_MODES = ("L", "RGB", "RGBA", "P", "LA", "RGBX")


class SkippedSample(NamedTuple):
    """A problem found while loading: the file it concerns and what is wrong with it."""

    file: str
    reason: str


class RGBTSampleError(ValueError):
    """Raised with ``errors="raise"`` when samples are broken; ``problems`` lists all of them."""

    def __init__(self, problems):
        self.problems = list(problems)
        first = self.problems[0]
        more = ""
        if len(self.problems) > 1:
            more = f" ({len(self.problems)} problems in total; errors='skip' drops them)"
        super().__init__(f"{first.file}: {first.reason}{more}")


class RGBTLayoutError(FileNotFoundError):
    """The folder does not have a layout the loader knows; the message shows the expected layout(s)."""


class RGBTDatasetDict(DatasetDict):
    """The ``DatasetDict`` the loaders return, with what happened while loading.

    Attributes:
        skipped: tuple of :class:`SkippedSample`, the samples dropped with ``errors="skip"`` (empty otherwise).
        split_files: ``{split: path}`` of the split lists used or written (M3FD), else empty.
        class_names: names of the label ids (segmentation) or of the ``objects.category`` ids (detection).
    """

    skipped: tuple = ()
    split_files: Mapping = MappingProxyType({})
    class_names: tuple = ()


@dataclass
class Sample:
    """Files of one pair; ``packed`` is a 4-channel RGB+T file used instead of ``visible`` / ``infrared``."""

    name: str
    visible: Path | None = None
    infrared: Path | None = None
    packed: Path | None = None
    label: Path | None = None
    annotation: Path | None = None


@dataclass
class AnnotationSpec:
    """How to read box annotations.

    ``format`` is ``"voc"`` (Pascal VOC XML, class by name) or ``"yolo"`` (``cls cx cy w h`` normalised, class by
    id). ``class_names`` are the output ``ClassLabel`` names. VOC names are matched case-insensitively;
    ``yolo_names`` names the file ids and is mapped onto ``class_names`` by name. Boxes that leave the image by at
    most ``tolerance_px`` are clipped to it; further out they are an error.
    """

    format: str
    class_names: tuple
    yolo_names: tuple = ()
    tolerance_px: float = 1.0

    def class_id(self, name):
        lookup = {n.lower(): i for i, n in enumerate(self.class_names)}
        return lookup.get(str(name).strip().lower())


def condition_from_name(name: str) -> str:
    """``"day"`` / ``"night"`` from MFNet's name suffix (``00012D``, ``00013N``), else ``"unknown"``."""
    if len(name) > 1 and name[-2].isdigit():
        return {"D": "day", "N": "night"}.get(name[-1], "unknown")
    return "unknown"


def _png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _probe(path, decode):
    """(size, mode, reason): ``decode`` loads every pixel, otherwise the header is read and ``verify()`` run
    (chunk checksums and truncation, without decoding). ``reason`` is None for a good file."""
    try:
        with Image.open(path) as image:
            size, mode = image.size, image.mode
            image.load() if decode else image.verify()
        return size, mode, None
    except Exception as error:  # PIL raises many exception types for damaged files
        return None, None, f"unreadable or corrupt image ({type(error).__name__}: {error})"


def _load(path):
    """(decoded PIL image, reason)."""
    try:
        image = Image.open(path)
        image.load()
        return image, None
    except Exception as error:  # PIL raises many exception types for damaged files
        return None, f"unreadable or corrupt image ({type(error).__name__}: {error})"


def _label_ids(image):
    """Class-id array (H, W) of a label image, or a reason why it is not a class-id mask."""
    if image.mode in ("L", "P") + SIXTEEN_BIT_MODES:
        return np.asarray(image), None
    if image.mode in ("RGB", "RGBA"):
        array = np.asarray(image)[..., :3]
        if (array == array[..., :1]).all():
            return array[..., 0], None
        return None, f"label is a colour image (mode {image.mode}); expected single-channel class ids"
    return None, f"label has unsupported mode {image.mode}; expected single-channel class ids"


def _check_boxes(boxes, width, height, tolerance):
    """Clip boxes that leave the image by <= tolerance; reason for the first bad box, or None."""
    for x1, y1, x2, y2 in boxes:
        if not np.isfinite([x1, y1, x2, y2]).all():
            return boxes, f"box {[x1, y1, x2, y2]} has a non-finite coordinate"
        if x2 <= x1 or y2 <= y1:
            return boxes, f"zero-size box [x1={x1:g}, y1={y1:g}, x2={x2:g}, y2={y2:g}]"
        if x1 < -tolerance or y1 < -tolerance or x2 > width + tolerance or y2 > height + tolerance:
            box = f"[x1={x1:g}, y1={y1:g}, x2={x2:g}, y2={y2:g}]"
            return boxes, f"box {box} lies outside the {width}x{height} image"
    clipped = np.clip(np.asarray(boxes, np.float64).reshape(-1, 4), 0, [width, height, width, height])
    if len(clipped) and ((clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])).any():
        return boxes, "box has zero size inside the image"
    return clipped.tolist(), None


def _read_voc(path, spec):
    root = ET.parse(path).getroot()
    boxes, classes = [], []
    for obj in root.iter("object"):
        name = obj.findtext("name", default="")
        class_id = spec.class_id(name)
        if class_id is None:
            raise ValueError(f"unknown class {name!r}; expected one of {', '.join(spec.class_names)}")
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise ValueError(f"object {name!r} has no <bndbox>")
        boxes.append([float(bndbox.findtext(key)) for key in ("xmin", "ymin", "xmax", "ymax")])
        classes.append(class_id)
    return boxes, classes


def _read_yolo(path, spec, width, height):
    boxes, classes = [], []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise ValueError(f"line {number}: expected 'cls cx cy w h', got {line.strip()!r}")
        yolo_id, (cx, cy, w, h) = int(fields[0]), (float(v) for v in fields[1:])
        if not 0 <= yolo_id < len(spec.yolo_names):
            raise ValueError(f"line {number}: class id {yolo_id} outside 0..{len(spec.yolo_names) - 1}")
        class_id = spec.class_id(spec.yolo_names[yolo_id])
        if class_id is None:
            raise ValueError(f"line {number}: class {spec.yolo_names[yolo_id]!r} is not one of {spec.class_names}")
        boxes.append([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height])
        classes.append(class_id)
    return boxes, classes


def _image_value(path):
    return {"path": str(path), "bytes": None}


def _check_sample(sample, num_classes, spec, decode):
    """(row dict, None) for a good sample, else (None, SkippedSample)."""
    row = {"name": sample.name, "condition": condition_from_name(sample.name)}
    if sample.packed is not None:
        packed, reason = _load(sample.packed)
        if reason:
            return None, SkippedSample(str(sample.packed), reason)
        if packed.mode != "RGBA":
            channels = len(packed.getbands())
            return None, SkippedSample(
                str(sample.packed), f"expected a 4-channel RGB+T image, got mode {packed.mode} ({channels} channels)"
            )
        array = np.asarray(packed)
        row["visible"] = {"path": f"{sample.name}.png", "bytes": _png_bytes(array[..., :3])}
        row["infrared"] = {"path": f"{sample.name}.png", "bytes": _png_bytes(array[..., 3])}
        size, reference = packed.size, sample.packed
    else:
        sizes = {}
        for key, path, modes in (
            ("visible", sample.visible, _VISIBLE_MODES),
            ("infrared", sample.infrared, _INFRARED_MODES),
        ):
            sizes[key], mode, reason = _probe(path, decode)
            if reason:
                return None, SkippedSample(str(path), reason)
            if mode not in modes:
                return None, SkippedSample(str(path), f"{key} image has unsupported mode {mode} (8-bit images only)")
            row[key] = _image_value(path)
        if sizes["visible"] != sizes["infrared"]:
            (vw, vh), (iw, ih) = sizes["visible"], sizes["infrared"]
            return None, SkippedSample(
                str(sample.infrared), f"size mismatch: visible {sample.visible.name} is {vw}x{vh}, infrared {iw}x{ih}"
            )
        size, reference = sizes["visible"], sample.visible
    if min(size) < MIN_IMAGE_SIDE:
        return None, SkippedSample(
            str(reference), f"image is {size[0]}x{size[1]} px; IVGF needs at least {MIN_IMAGE_SIDE} px per side"
        )
    if sample.label is not None:
        label, reason = _load(sample.label)
        if reason:
            return None, SkippedSample(str(sample.label), reason)
        if label.size != size:
            (lw, lh), (w, h) = label.size, size
            return None, SkippedSample(str(sample.label), f"size mismatch: label is {lw}x{lh}, images {w}x{h}")
        ids, reason = _label_ids(label)
        if reason:
            return None, SkippedSample(str(sample.label), reason)
        values = np.unique(ids)
        bad = values[((values < 0) | (values >= num_classes)) & (values != IGNORE_INDEX)]
        if len(bad):
            return None, SkippedSample(
                str(sample.label),
                f"label ids {bad[:8].tolist()} outside 0..{num_classes - 1} (255 = ignore is allowed)",
            )
        if label.mode == "L":
            row["label"] = _image_value(sample.label)
        else:
            row["label"] = {"path": f"{sample.name}.png", "bytes": _png_bytes(ids.astype(np.uint8))}
    if sample.annotation is not None:
        try:
            if spec.format == "voc":
                boxes, classes = _read_voc(sample.annotation, spec)
            else:
                boxes, classes = _read_yolo(sample.annotation, spec, *size)
        except (ET.ParseError, ValueError, TypeError, OSError) as error:
            return None, SkippedSample(str(sample.annotation), f"bad annotation: {error}")
        boxes, reason = _check_boxes(boxes, *size, spec.tolerance_px)
        if reason:
            return None, SkippedSample(str(sample.annotation), f"{reason} ({reference.name})")
        row["objects"] = {"bbox": boxes, "category": classes}
    return row, None


def _features(has_label, spec):
    features = {"visible": ImageFeature(mode="RGB"), "infrared": ImageFeature(mode="L")}
    if has_label:
        features["label"] = ImageFeature(mode="L")
    if spec is not None:
        features["objects"] = {
            "bbox": List(List(Value("float32"), length=4)),
            "category": List(ClassLabel(names=list(spec.class_names))),
        }
    features["name"] = Value("string")
    features["condition"] = Value("string")
    return Features(features)


def build_split(samples, *, with_label=False, num_classes=0, spec=None, check="full", num_workers=None):
    """Check ``samples`` and build a ``Dataset``; returns ``(dataset, problems)``.

    ``with_label`` adds the ``label`` column (ids must be below ``num_classes`` or 255); ``spec``
    (:class:`AnnotationSpec`) adds the ``objects`` column. ``check`` is ``"full"`` (decode every image) or
    ``"header"`` (sizes, modes and file integrity through ``PIL.Image.verify``; labels and 4-channel files are
    always decoded). ``num_workers`` threads do the checking (default: CPU count, at most 8).
    """
    if check not in ("full", "header"):
        raise ValueError(f"check must be 'full' or 'header', got {check!r}")
    workers = num_workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda s: _check_sample(s, num_classes, spec, check == "full"), samples))
    rows = [row for row, _ in results if row is not None]
    problems = [problem for _, problem in results if problem is not None]
    features = _features(with_label, spec)
    columns = {key: [row[key] for row in rows] for key in features}
    return Dataset.from_dict(columns, features=features), problems


def finish(splits, problems, errors, class_names=(), split_files=None):
    """The :class:`RGBTDatasetDict`, or :class:`RGBTSampleError` for ``errors="raise"`` and any problem."""
    if problems and errors == "raise":
        raise RGBTSampleError(problems)
    if problems:
        shown = "; ".join(f"{p.file}: {p.reason}" for p in problems[:3])
        logger.warning("skipped %d broken sample(s): %s%s", len(problems), shown, " ..." if len(problems) > 3 else "")
    result = RGBTDatasetDict(splits)
    result.skipped = tuple(problems)
    result.split_files = dict(split_files or {})
    result.class_names = tuple(class_names)
    return result


def check_errors_argument(errors):
    """``ValueError`` unless ``errors`` is ``"raise"`` or ``"skip"``."""
    if errors not in ("raise", "skip"):
        raise ValueError(f"errors must be 'raise' or 'skip', got {errors!r}")
