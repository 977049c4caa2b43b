"""Class names and palettes of the RGB-T data sets (MFNet / MSRS segmentation, M3FD detection).

MFNet and MSRS share the 9 MFNet classes; ``unlabeled`` (id 0) is a real, trained and evaluated class and only
255 is ignored. M3FD repositories disagree on the id order of its 6 classes, so M3FD classes are always mapped
by name onto :data:`M3FD_CLASSES`.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "IGNORE_INDEX",
    "MFNET_CLASSES",
    "MFNET_PALETTE",
    "M3FD_CLASSES",
    "M3FD_PALETTE",
    "TARDAL_M3FD_ORDER",
    "id2label",
    "colorize_mask",
]

IGNORE_INDEX = 255

MFNET_CLASSES = (
    "unlabeled",
    "car",
    "person",
    "bike",
    "curve",
    "car_stop",
    "guardrail",
    "color_cone",
    "bump",
)

# RGB colours of the MFNet classes in id order (RTFNet util/util.py, MSRS visualize.py).
MFNET_PALETTE = (
    (0, 0, 0),
    (64, 0, 128),
    (64, 64, 0),
    (0, 128, 192),
    (0, 0, 192),
    (128, 128, 0),
    (64, 64, 128),
    (192, 128, 128),
    (192, 64, 0),
)

# This project's canonical M3FD order (the order of the TarDAL README's class list).
M3FD_CLASSES = ("People", "Car", "Bus", "Motorcycle", "Lamp", "Truck")

M3FD_PALETTE = (
    (220, 20, 60),
    (0, 0, 142),
    (0, 60, 100),
    (0, 0, 230),
    (250, 170, 30),
    (0, 0, 70),
)

# Id order of the YOLO txt labels written by TarDAL's own loader (loader/m3fd.py).
TARDAL_M3FD_ORDER = ("People", "Car", "Bus", "Lamp", "Motorcycle", "Truck")


def id2label(class_names) -> dict:
    """``{id: name}`` for a model config (``config.id2label``)."""
    return {index: name for index, name in enumerate(class_names)}


def colorize_mask(mask, palette=MFNET_PALETTE, ignore_color=(255, 255, 255)) -> np.ndarray:
    """Colour a class-id mask (H, W) for display: uint8 (H, W, 3); ids outside the palette get ``ignore_color``."""
    mask = np.asarray(mask)
    lut = np.tile(np.asarray(ignore_color, dtype=np.uint8), (256, 1))
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return lut[mask.astype(np.uint8)]
