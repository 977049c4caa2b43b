"""Pictures of predictions: colour-coded masks, overlays, boxes with class and score, and safe PNG writing.

Palettes follow the data set of the model's labels (``config.id2label``): MFNet's for the 9 MFNet / MSRS classes,
M3FD's for its 6 classes, and evenly spread hues otherwise. :func:`save_png` never replaces an existing file
unless ``overwrite=True``.
"""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .data.classes import M3FD_CLASSES, M3FD_PALETTE, MFNET_CLASSES, MFNET_PALETTE, colorize_mask

__all__ = [
    "BACKGROUND_NAMES",
    "class_names_of",
    "palette_for",
    "colorize",
    "overlay",
    "draw_detections",
    "save_png",
]

# Class names drawn transparent in overlays (the image shows through): MFNet's "unlabeled" and the like.
BACKGROUND_NAMES = ("unlabeled", "background", "__background__")


def class_names_of(id2label: Mapping) -> list:
    """Class names in id order from a ``config.id2label`` (int or str keys)."""
    by_id = {int(key): str(value) for key, value in id2label.items()}
    missing = [index for index in range(len(by_id)) if index not in by_id]
    if missing:
        raise ValueError(f"id2label must number the classes 0..{len(by_id) - 1}; ids {missing} are missing")
    return [by_id[index] for index in range(len(by_id))]


def _spread_hues(count: int) -> list:
    """``count`` distinct saturated colours (golden-ratio hue steps), deterministic."""
    colours = []
    for index in range(count):
        red, green, blue = colorsys.hsv_to_rgb((index * 0.618033988749895) % 1.0, 0.75, 0.95)
        colours.append((round(red * 255), round(green * 255), round(blue * 255)))
    return colours


def palette_for(class_names: Sequence[str]) -> list:
    """RGB colours, one per class: the MFNet or M3FD palette when the names are that data set's classes
    (case-insensitive), else evenly spread hues (black for a background class)."""
    lowered = [name.lower() for name in class_names]
    for names, palette in ((MFNET_CLASSES, MFNET_PALETTE), (M3FD_CLASSES, M3FD_PALETTE)):
        if lowered == [name.lower() for name in names]:
            return [tuple(colour) for colour in palette]
    colours = _spread_hues(len(class_names))
    return [(0, 0, 0) if name in BACKGROUND_NAMES else colour for name, colour in zip(lowered, colours)]


def colorize(mask, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """Class-id mask (H, W) -> uint8 (H, W, 3); ids without a colour (e.g. 255) become white."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W) class ids, got shape {mask.shape}")
    if len(palette) > 255:
        raise ValueError(f"at most 255 classes can be coloured, got a palette of {len(palette)}")
    return colorize_mask(mask, palette)


def overlay(
    image, mask, palette: Sequence[Sequence[int]], alpha: float = 0.5, transparent_ids: Sequence[int] = ()
) -> np.ndarray:
    """Blend the colour-coded ``mask`` over ``image`` (uint8 (H, W, 3) or (H, W)); pixels of
    ``transparent_ids`` keep the image. Returns uint8 (H, W, 3)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    base = np.asarray(image)
    if base.ndim == 2:
        base = np.repeat(base[..., None], 3, axis=2)
    mask = np.asarray(mask)
    if base.shape[:2] != mask.shape:
        raise ValueError(f"image {base.shape[:2]} and mask {mask.shape} sizes differ (H, W)")
    weight = np.full(mask.shape, alpha, dtype=np.float32)
    if len(transparent_ids):
        weight[np.isin(mask, np.asarray(transparent_ids))] = 0.0
    blended = base.astype(np.float32) * (1.0 - weight[..., None]) + colorize(mask, palette) * weight[..., None]
    return np.rint(blended).astype(np.uint8)


def draw_detections(
    image, boxes, labels, scores, class_names: Sequence[str], palette: Optional[Sequence[Sequence[int]]] = None
) -> Image.Image:
    """Draw boxes (n, 4) absolute xyxy with "class score" tags on a copy of ``image`` (RGB uint8 array or PIL)."""
    picture = Image.fromarray(np.asarray(image)).convert("RGB")
    boxes, labels, scores = np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(labels), np.asarray(scores)
    if not len(boxes) == len(labels) == len(scores):
        raise ValueError(f"got {len(boxes)} boxes, {len(labels)} labels and {len(scores)} scores")
    bad = [int(label) for label in labels if not 0 <= int(label) < len(class_names)]
    if bad:
        raise ValueError(f"labels {sorted(set(bad))} are not class ids 0..{len(class_names) - 1}")
    palette = palette or palette_for(class_names)
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default()
    width = max(1, round(min(picture.size) / 200))
    for box, label, score in zip(boxes, labels, scores):
        colour = tuple(int(c) for c in palette[int(label)])
        x0, y0, x1, y1 = box.tolist()
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=width)
        text = f"{class_names[int(label)]} {float(score):.2f}"
        left, top, right, bottom = draw.textbbox((x0, y0), text, font=font)
        shift = min(bottom - top + 2, y0)  # tag above the box when there is room, else inside it
        draw.rectangle((left, top - shift, right + 2, bottom - shift), fill=colour)
        text_colour = (0, 0, 0) if sum(colour) > 384 else (255, 255, 255)
        draw.text((x0 + 1, y0 - shift), text, fill=text_colour, font=font)
    return picture


def save_png(image, path, overwrite: bool = False) -> Path:
    """Write ``image`` (PIL or uint8 array) as PNG; an existing ``path`` is refused unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it")
    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb" if overwrite else "xb") as handle:
        picture.save(handle, format="PNG")
    return path
