"""Rasterising primitives and object painters of SynthRGBT (numpy, vectorised on each shape's window).

A shape is ``(top, left, mask)``: a boolean mask on the integer pixel window whose corner is ``(top, left)``; a
pixel belongs to the shape when its centre does. :class:`Canvas` holds the layers a scene is drawn into. Object
painters take the object's bottom row, centre column and size in pixels; temperatures are infrared grey levels
in [0, 1] (people about 0.8-0.95, car bodies 0.55-0.65, road about 0.45-0.5, guardrails 0.1-0.16).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .classes import M3FD_CLASSES, MFNET_CLASSES

__all__ = [
    "SEG",
    "DET",
    "Canvas",
    "rect",
    "ellipse",
    "ring",
    "triangle",
    "segment",
    "smooth_noise",
    "draw_person",
    "draw_car",
    "draw_bike",
    "draw_cone",
    "draw_bump",
    "draw_car_stop",
    "draw_bus",
    "draw_lamp",
]

SEG = {name: index for index, name in enumerate(MFNET_CLASSES)}
DET = {name: index for index, name in enumerate(M3FD_CLASSES)}

_PAINT_COLOURS = np.array(
    [
        (0.75, 0.1, 0.1),
        (0.1, 0.2, 0.6),
        (0.85, 0.85, 0.85),
        (0.15, 0.15, 0.17),
        (0.5, 0.5, 0.55),
        (0.2, 0.45, 0.25),
        (0.8, 0.7, 0.2),
        (0.35, 0.2, 0.1),
    ],
    dtype=np.float32,
)
_SKIN = np.array([(0.87, 0.7, 0.58), (0.62, 0.44, 0.3), (0.36, 0.24, 0.16)], dtype=np.float32)
_CONE_ORANGE = (1.0, 0.42, 0.05)
_YELLOW = (0.95, 0.8, 0.1)


def _window(top, left, bottom, right):
    y0, x0 = int(np.floor(top)), int(np.floor(left))
    y1, x1 = max(int(np.ceil(bottom)), y0 + 1), max(int(np.ceil(right)), x0 + 1)
    yy = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5
    xx = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5
    return y0, x0, yy, xx


def rect(top, left, bottom, right):
    """Axis-aligned rectangle [top, bottom) x [left, right)."""
    y0, x0, yy, xx = _window(top, left, bottom, right)
    return y0, x0, (yy >= top) & (yy < bottom) & (xx >= left) & (xx < right)


def ellipse(cy, cx, ry, rx):
    """Filled ellipse with centre (cy, cx) and radii (ry, rx)."""
    y0, x0, yy, xx = _window(cy - ry, cx - rx, cy + ry, cx + rx)
    return y0, x0, ((yy - cy) / max(ry, 0.5)) ** 2 + ((xx - cx) / max(rx, 0.5)) ** 2 <= 1.0


def ring(cy, cx, r_out, r_in):
    """Annulus between radii ``r_in`` and ``r_out`` (a wheel)."""
    y0, x0, yy, xx = _window(cy - r_out, cx - r_out, cy + r_out, cx + r_out)
    d2 = (yy - cy) ** 2 + (xx - cx) ** 2
    return y0, x0, (d2 <= r_out**2) & (d2 >= r_in**2)


def triangle(apex_y, cx, base_y, half_base):
    """Upright isosceles triangle from the apex row to the base row."""
    y0, x0, yy, xx = _window(apex_y, cx - half_base, base_y, cx + half_base)
    half = half_base * (yy - apex_y) / max(base_y - apex_y, 1e-3)
    return y0, x0, (yy >= apex_y) & (yy < base_y) & (np.abs(xx - cx) <= half)


def segment(ya, xa, yb, xb, half_width):
    """Thick line segment (capsule) from (ya, xa) to (yb, xb)."""
    hw = max(half_width, 0.5)
    y0, x0, yy, xx = _window(min(ya, yb) - hw, min(xa, xb) - hw, max(ya, yb) + hw, max(xa, xb) + hw)
    dy, dx = yb - ya, xb - xa
    t = np.clip(((yy - ya) * dy + (xx - xa) * dx) / max(dy * dy + dx * dx, 1e-6), 0.0, 1.0)
    return y0, x0, (yy - ya - t * dy) ** 2 + (xx - xa - t * dx) ** 2 <= hw * hw


def smooth_noise(rng, height, width, cell):
    """Value noise in [0, 1], float32 (height, width), with features about ``cell`` pixels wide."""
    cell = max(int(cell), 1)
    grid = rng.random((height // cell + 2, width // cell + 2), dtype=np.float32)
    big = Image.fromarray(grid).resize(((width // cell + 2) * cell, (height // cell + 2) * cell), Image.BILINEAR)
    return np.asarray(big, dtype=np.float32)[:height, :width]


class Canvas:
    """Layers of a scene being drawn, plus the per-instance bookkeeping used to derive boxes."""

    def __init__(self, height, width):
        self.height, self.width = height, width
        self.albedo = np.zeros((height, width, 3), np.float32)
        self.temperature = np.zeros((height, width), np.float32)
        self.night_gain = np.zeros((height, width), np.float32)
        self.label = np.zeros((height, width), np.uint8)
        self.instance = np.zeros((height, width), np.int32)
        self.instances = []  # [class id (-1: no box class), y0, x0, y1, x1, painted pixels]
        self.lights = []  # (y, x, radius, intensity, rgb)

    def new_instance(self, class_name=None):
        """Id of a new object; ``class_name`` is its M3FD class (None: an unboxed object, e.g. for segmentation)."""
        self.instances.append([DET[class_name] if class_name else -1, self.height, self.width, 0, 0, 0])
        return len(self.instances)

    def paint(self, shape, albedo, temperature, label=None, instance=0, night_gain=0.0):
        """Paint ``shape`` (top, left, mask); ``albedo`` is an RGB triple or an (h, w, 3) array on the window."""
        top, left, mask = shape
        h, w = mask.shape
        ya, xa = max(top, 0), max(left, 0)
        yb, xb = min(top + h, self.height), min(left + w, self.width)
        if ya >= yb or xa >= xb:
            return
        inner = (slice(ya - top, yb - top), slice(xa - left, xb - left))
        m = mask[inner]
        if not m.any():
            return
        frame = (slice(ya, yb), slice(xa, xb))
        albedo = np.asarray(albedo, np.float32)
        albedo = albedo[inner] if albedo.ndim == 3 else np.broadcast_to(albedo, m.shape + (3,))
        temperature = np.asarray(temperature, np.float32)
        temperature = temperature[inner] if temperature.ndim == 2 else np.broadcast_to(temperature, m.shape)
        self.albedo[frame][m] = albedo[m]
        self.temperature[frame][m] = temperature[m]
        self.night_gain[frame][m] = night_gain
        if label is not None:
            self.label[frame][m] = label
        if instance:
            self.instance[frame][m] = instance
            record = self.instances[instance - 1]
            record[1], record[2] = min(record[1], ya), min(record[2], xa)
            record[3], record[4] = max(record[3], yb), max(record[4], xb)
            record[5] += int(m.sum())

    def boxes(self, min_visible=0.25, min_size=2):
        """Tight xyxy boxes of the visible part of each instance; heavily occluded or tiny ones are dropped."""
        boxes, classes = [], []
        for index, (class_id, y0, x0, y1, x1, painted) in enumerate(self.instances, start=1):
            if painted == 0:
                continue
            own = self.instance[y0:y1, x0:x1] == index
            if own.sum() < min_visible * painted:
                continue
            rows, cols = np.flatnonzero(own.any(1)), np.flatnonzero(own.any(0))
            box = (x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1)
            if box[2] - box[0] < min_size or box[3] - box[1] < min_size:
                continue
            boxes.append(box)
            classes.append(class_id)
        return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int64)


def draw_person(canvas, rng, bottom, cx, height_px, label, instance):
    """A walking person (legs, torso, arms, head): clothes of random colour, hot skin in the infrared."""
    h = height_px
    skin = _SKIN[rng.integers(len(_SKIN))]
    shirt = _PAINT_COLOURS[rng.integers(len(_PAINT_COLOURS))] * rng.uniform(0.6, 1.1)
    trousers = _PAINT_COLOURS[rng.integers(len(_PAINT_COLOURS))] * 0.6
    stride = rng.uniform(-0.12, 0.12) * h
    top = bottom - h
    for leg in (-1, 1):
        foot = cx + leg * (0.07 * h) + leg * stride * 0.5
        canvas.paint(
            segment(top + 0.52 * h, cx + leg * 0.06 * h, bottom, foot, 0.055 * h),
            trousers,
            rng.uniform(0.72, 0.8),
            label,
            instance,
        )
    canvas.paint(
        rect(top + 0.16 * h, cx - 0.15 * h, top + 0.56 * h, cx + 0.15 * h),
        shirt,
        rng.uniform(0.78, 0.86),
        label,
        instance,
    )
    for arm in (-1, 1):
        canvas.paint(
            segment(top + 0.2 * h, cx + arm * 0.15 * h, top + 0.5 * h, cx + arm * 0.2 * h, 0.04 * h),
            shirt,
            0.8,
            label,
            instance,
        )
    canvas.paint(ellipse(top + 0.09 * h, cx, 0.085 * h, 0.07 * h), skin, rng.uniform(0.9, 0.98), label, instance)


def draw_car(canvas, rng, bottom, cx, height_px, label, instance, night):
    """A car seen from behind or at an angle: warm body, hot wheels, cold windows; tail-light glare at night."""
    h = height_px
    w = h * rng.uniform(1.1, 2.3)
    paint = _PAINT_COLOURS[rng.integers(len(_PAINT_COLOURS))]
    body_t = rng.uniform(0.55, 0.65)
    left, top = cx - w / 2, bottom - h
    canvas.paint(rect(top + 0.4 * h, left, bottom - 0.12 * h, left + w), paint, body_t, label, instance)
    canvas.paint(rect(top, left + 0.16 * w, top + 0.42 * h, left + 0.84 * w), paint * 0.9, body_t, label, instance)
    canvas.paint(
        rect(top + 0.08 * h, left + 0.22 * w, top + 0.38 * h, left + 0.78 * w),
        (0.15, 0.2, 0.28),
        0.3,
        label,
        instance,
        night_gain=0.05,
    )
    canvas.paint(
        rect(bottom - 0.3 * h, left + 0.05 * w, bottom - 0.12 * h, left + 0.95 * w), paint * 0.8, 0.72, label, instance
    )
    for wx in (0.2, 0.8):
        canvas.paint(
            ellipse(bottom - 0.13 * h, left + wx * w, 0.14 * h, 0.09 * w),
            (0.06, 0.06, 0.06),
            rng.uniform(0.8, 0.88),
            label,
            instance,
        )
    for lx in (0.1, 0.9):
        light = rect(top + 0.5 * h, left + (lx - 0.06) * w, top + 0.62 * h, left + (lx + 0.06) * w)
        canvas.paint(light, (0.9, 0.15, 0.1), 0.7, label, instance, night_gain=0.6)
        if night:
            canvas.lights.append((top + 0.56 * h, left + lx * w, 0.25 * h + 1, 0.8, (1.0, 0.55, 0.4)))


def draw_bike(canvas, rng, bottom, cx, height_px, label, instance, motor=False):
    """A bicycle (or motorcycle with ``motor``): two wheels and a frame; warm in the infrared."""
    h = height_px
    r = 0.3 * h
    half_base = 0.55 * h
    frame = _PAINT_COLOURS[rng.integers(len(_PAINT_COLOURS))]
    tyre_t = rng.uniform(0.62, 0.72)
    for wx in (-1, 1):
        canvas.paint(
            ring(bottom - r, cx + wx * half_base, r, r * (0.55 if motor else 0.75)),
            (0.08, 0.08, 0.08),
            tyre_t,
            label,
            instance,
        )
    top = bottom - h
    thick = (0.09 if motor else 0.04) * h
    for ya, xa, yb, xb in (
        (bottom - r, cx - half_base, top + 0.35 * h, cx),
        (top + 0.35 * h, cx, bottom - r, cx + half_base),
        (bottom - r, cx - half_base, bottom - r, cx + 0.1 * h),
        (top + 0.3 * h, cx - 0.05 * h, top + 0.15 * h, cx + 0.4 * h),
    ):
        canvas.paint(segment(ya, xa, yb, xb, thick), frame, 0.75 if motor else 0.68, label, instance)
    if motor:
        canvas.paint(ellipse(bottom - 0.45 * h, cx, 0.16 * h, 0.3 * h), frame * 0.8, 0.88, label, instance)


def draw_cone(canvas, rng, bottom, cx, height_px, road_temperature):
    """An orange traffic cone with a white band; at the road's temperature in the infrared."""
    h = height_px
    t = road_temperature + rng.uniform(-0.006, 0.006)
    canvas.paint(
        rect(bottom - 0.12 * h, cx - 0.42 * h, bottom, cx + 0.42 * h),
        (0.15, 0.15, 0.15),
        t,
        SEG["color_cone"],
        night_gain=0.2,
    )
    canvas.paint(
        triangle(bottom - h, cx, bottom - 0.1 * h, 0.32 * h), _CONE_ORANGE, t, SEG["color_cone"], night_gain=0.5
    )
    band = _intersect(
        triangle(bottom - h, cx, bottom - 0.1 * h, 0.32 * h),
        rect(bottom - 0.6 * h, cx - 0.2 * h, bottom - 0.45 * h, cx + 0.2 * h),
    )
    canvas.paint(band, (0.95, 0.95, 0.95), t, SEG["color_cone"], night_gain=0.55)


def _intersect(a, b):
    """Intersection of two shapes as a shape on ``b``'s window."""
    (ta, la, ma), (tb, lb, mb) = a, b
    ys = np.arange(mb.shape[0])[:, None] + tb - ta
    xs = np.arange(mb.shape[1])[None, :] + lb - la
    inside = (ys >= 0) & (ys < ma.shape[0]) & (xs >= 0) & (xs < ma.shape[1])
    picked = ma[np.clip(ys, 0, ma.shape[0] - 1), np.clip(xs, 0, ma.shape[1] - 1)]
    return tb, lb, mb & inside & picked


def draw_bump(canvas, road, row, road_temperature):
    """A speed bump: yellow/black stripes across the road; the temperature of the road in the infrared."""
    s = float(road.scale(row))
    thick = 0.05 * canvas.height * s + 1
    left, right = float(road.left(row)), float(road.right(row))
    top, x0, mask = rect(row - thick, left, row, right)
    period = max(2.0, 0.06 * canvas.width * s)
    xs = np.arange(mask.shape[1], dtype=np.float32)[None, :] + x0
    stripes = (xs // period) % 2 == 0
    albedo = np.where(stripes[..., None], np.float32(_YELLOW), np.float32([0.08, 0.08, 0.08]))
    albedo = np.broadcast_to(albedo, mask.shape + (3,))
    canvas.paint((top, x0, mask), albedo, road_temperature + 0.008, SEG["bump"], night_gain=0.4)


def draw_car_stop(canvas, rng, bottom, cx, width_px, road_temperature):
    """A low parking block, yellow or concrete; at the road's temperature in the infrared."""
    w = width_px
    colour = _YELLOW if rng.random() < 0.6 else (0.85, 0.84, 0.8)
    canvas.paint(
        rect(bottom - 0.28 * w, cx - w / 2, bottom, cx + w / 2),
        colour,
        road_temperature - 0.008,
        SEG["car_stop"],
        night_gain=0.3,
    )


def draw_bus(canvas, rng, bottom, cx, height_px, instance, night, truck=False):
    """A bus (window band, hot engine at the back) or, with ``truck``, a hot cab and a cooler cargo box."""
    h = height_px
    w = h * rng.uniform(1.2, 2.6)
    left, top = cx - w / 2, bottom - h
    paint = _PAINT_COLOURS[rng.integers(len(_PAINT_COLOURS))]
    if truck:
        cab_w = 0.32 * w
        canvas.paint(rect(top, left + cab_w, bottom - 0.12 * h, left + w), paint * 0.9 + 0.1, 0.46, None, instance)
        canvas.paint(rect(top + 0.3 * h, left, bottom - 0.12 * h, left + cab_w), paint, 0.72, None, instance)
        canvas.paint(
            rect(top + 0.36 * h, left + 0.1 * cab_w, top + 0.55 * h, left + 0.9 * cab_w),
            (0.15, 0.2, 0.28),
            0.3,
            None,
            instance,
        )
    else:
        canvas.paint(rect(top, left, bottom - 0.1 * h, left + w), paint, 0.6, None, instance)
        canvas.paint(
            rect(top + 0.15 * h, left + 0.05 * w, top + 0.45 * h, left + 0.95 * w),
            (0.15, 0.2, 0.28),
            0.34,
            None,
            instance,
        )
        canvas.paint(
            rect(top + 0.55 * h, left + 0.85 * w, bottom - 0.15 * h, left + w), paint * 0.8, 0.85, None, instance
        )
    for wx in (0.15, 0.85):
        canvas.paint(
            ellipse(bottom - 0.1 * h, left + wx * w, 0.1 * h, 0.05 * w), (0.06, 0.06, 0.06), 0.84, None, instance
        )
    if night:
        canvas.lights.append((bottom - 0.25 * h, left + 0.05 * w, 0.2 * h + 1, 0.8, (1.0, 0.9, 0.7)))


def draw_lamp(canvas, rng, bottom, cx, height_px, instance, night):
    """A street lamp: thin pole, arm and a hot head that glows at night."""
    h = height_px
    side = 1 if rng.random() < 0.5 else -1
    canvas.paint(
        rect(bottom - h, cx - 0.015 * h - 0.5, bottom, cx + 0.015 * h + 0.5), (0.3, 0.3, 0.32), 0.32, None, instance
    )
    canvas.paint(
        segment(bottom - h, cx, bottom - h, cx + side * 0.18 * h, 0.012 * h), (0.3, 0.3, 0.32), 0.32, None, instance
    )
    head = ellipse(bottom - h + 0.02 * h, cx + side * 0.18 * h, 0.025 * h + 0.5, 0.06 * h + 0.5)
    canvas.paint(head, (0.95, 0.92, 0.75), 0.88, None, instance, night_gain=1.0)
    if night:
        canvas.lights.append((bottom - h + 0.03 * h, cx + side * 0.18 * h, 0.2 * h + 1, 1.0, (1.0, 0.85, 0.55)))
