"""Rendering of one SynthRGBT street scene: aligned visible / infrared images, MFNet pixel labels, M3FD boxes.

Everything is numpy and vectorised: each shape is rasterised on its own bounding window with broadcast
comparisons (:mod:`.synthetic_draw`), the background on the full frame. The scene is built as a visible
*albedo* (colour under daylight), an infrared *temperature* image (0-1) and a per-pixel *night gain* (how much
of the surface stays visible at night: retro-reflective paint and cones keep some, skin and cloth do not);
:func:`render_scene` then lights the albedo for day or night, adds glare, sensor noise, infrared blur and
optional infrared misregistration.

Modality-specific visibility (what makes fusion matter):

* people, cars, bikes, motorcycles, buses, trucks and lamp heads are hot in the infrared;
* colour cones, bumps, car stops and curbs have colour / texture in the visible image but the temperature of
  the road in the infrared (within about 1-3 grey levels of 255);
* guardrails are cold metal: darker than their surroundings in the infrared;
* at night the visible image is dark (ambient light 7-12 %) and noisy, with glare around car lights and lamps;
  retro-reflective objects (cones, curbs, bumps, car stops, lane marks) keep part of their brightness, people
  do not. The infrared image is rendered the same way by day and by night.

``impairments`` adds glare, thermal crossover, one-modality dropout and misregistration
(:mod:`.synthetic_impairments`), drawn from a separate generator so that the base scene stays the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np
from PIL import Image

from .synthetic_draw import (
    SEG,
    Canvas,
    draw_bike,
    draw_bump,
    draw_bus,
    draw_car,
    draw_car_stop,
    draw_cone,
    draw_lamp,
    draw_person,
    smooth_noise,
)
from .synthetic_impairments import (
    cross_over,
    degrade,
    glare_lights,
    misregistration_offset,
    plan_impairments,
    resolve_impairments,
    shift,
)

__all__ = ["Scene", "render_scene"]


@dataclass
class Scene:
    """One rendered scene.

    ``visible`` uint8 (H, W, 3); ``infrared`` uint8 (H, W); ``label`` uint8 (H, W) MFNet ids (0 where no
    segmentation class was drawn); ``boxes`` float32 (N, 4) absolute xyxy pixels of the visible extent of each
    M3FD object; ``box_classes`` int64 (N,) ids into ``M3FD_CLASSES``; ``night`` the lighting; ``impairments``
    ``{name: parameters}`` of the impairments applied (JSON-serialisable; empty for none).
    """

    visible: np.ndarray
    infrared: np.ndarray
    label: np.ndarray
    boxes: np.ndarray
    box_classes: np.ndarray
    night: bool
    impairments: dict = field(default_factory=dict)


class _Road:
    """A straight road in perspective: edges meet at the vanishing point on the horizon."""

    def __init__(self, rng, height, width):
        self.height, self.width = height, width
        self.horizon = height * rng.uniform(0.33, 0.45)
        self.vx = width * rng.uniform(0.4, 0.6)
        self.left_bottom = width * rng.uniform(-0.35, 0.15)
        self.right_bottom = width * rng.uniform(0.85, 1.35)

    def scale(self, y):
        """Perspective scale at image row ``y``: 0 at the horizon, 1 at the bottom row."""
        return np.maximum((np.asarray(y, np.float32) - self.horizon) / (self.height - self.horizon), 0.0)

    def edge(self, y, bottom_x):
        return self.vx + (bottom_x - self.vx) * self.scale(y)

    def left(self, y):
        return self.edge(y, self.left_bottom)

    def right(self, y):
        return self.edge(y, self.right_bottom)

    def row_at_scale(self, s):
        return self.horizon + s * (self.height - self.horizon)


def _draw_background(canvas, rng, road, road_temperature):
    height, width = canvas.height, canvas.width
    yy = np.arange(height, dtype=np.float32)[:, None] + 0.5
    xx = np.arange(width, dtype=np.float32)[None, :] + 0.5
    fine = smooth_noise(rng, height, width, max(2, width // 80))
    coarse = smooth_noise(rng, height, width, max(4, width // 10))
    s = road.scale(yy)

    sky_t = np.clip(yy / road.horizon, 0, 1)[..., None]
    sky = (1 - sky_t) * np.array([0.3, 0.5, 0.85], np.float32) + sky_t * np.array([0.75, 0.82, 0.9], np.float32)
    canvas.albedo[:] = np.broadcast_to(sky, (height, width, 3))
    canvas.temperature[:] = 0.08 + 0.06 * coarse

    # Buildings: random-width blocks along the horizon, with a window grid.
    edges = np.cumsum(rng.uniform(0.04, 0.18, size=40) * width)
    block = np.searchsorted(edges, xx[0])
    n_blocks = int(block.max()) + 1
    tops = road.horizon - rng.uniform(0.05, 0.3, n_blocks) * height
    colours = rng.uniform(0.3, 0.75, (n_blocks, 1)) * rng.uniform(0.8, 1.1, (n_blocks, 3))
    building = yy >= tops[block][None, :]
    period = max(3, width // 40)
    window = ((yy.astype(int) % period) < period // 2) & ((xx.astype(int) % period) < period // 2)
    building_albedo = colours[block][None, :, :] * (0.85 + 0.3 * fine[..., None])
    building_albedo = np.where(window[..., None], building_albedo * 0.45, building_albedo)
    temps = rng.uniform(0.28, 0.45, n_blocks)[block][None, :] + 0.05 * coarse
    upper = building & (yy < road.horizon)
    canvas.albedo[upper] = building_albedo[upper]
    canvas.temperature[upper] = np.broadcast_to(temps, upper.shape)[upper]

    # Ground beside the road: grass or pavement.
    ground = yy >= road.horizon
    ground_colour = (
        np.array([0.25, 0.4, 0.18], np.float32) if rng.random() < 0.5 else np.array([0.55, 0.53, 0.5], np.float32)
    )
    ground_albedo = ground_colour * (0.7 + 0.5 * fine[..., None]) * (0.85 + 0.3 * coarse[..., None])
    ground_mask = np.broadcast_to(ground, (height, width))
    canvas.albedo[ground_mask] = ground_albedo[ground_mask]
    canvas.temperature[ground_mask] = (0.36 + 0.08 * coarse)[ground_mask]

    # Road: asphalt with fine texture; the infrared sees it as a smooth warm surface.
    on_road = ground & (xx >= road.left(yy)) & (xx <= road.right(yy))
    asphalt = (0.28 + 0.1 * fine + 0.05 * coarse)[..., None] * np.array([1.0, 1.0, 1.04], np.float32)
    canvas.albedo[on_road] = asphalt[on_road]
    canvas.temperature[on_road] = (road_temperature + 0.03 * coarse)[on_road]

    # Dashed centre line (not a labelled class); retro-reflective paint.
    centre = 0.5 * (road.left(yy) + road.right(yy))
    depth = 1.0 / np.maximum(s, 1e-3)
    dashes = on_road & (np.abs(xx - centre) <= 0.006 * width * s + 0.5) & ((depth * 1.5) % 1.0 < 0.5) & (s > 0.03)
    canvas.albedo[dashes] = 0.92
    canvas.temperature[dashes] += 0.01
    canvas.night_gain[dashes] = 0.4


def _draw_curbs(canvas, rng, road, road_temperature):
    """Curbs ('curve'): bands along the road edges, painted red/white or concrete; faint in the infrared."""
    height, width = canvas.height, canvas.width
    yy = np.arange(height, dtype=np.float32)[:, None] + 0.5
    xx = np.arange(width, dtype=np.float32)[None, :] + 0.5
    s = road.scale(yy)
    band = 0.03 * width * s + 0.75
    for side in (-1, 1):
        if rng.random() > 0.75:
            continue
        edge = road.left(yy) if side < 0 else road.right(yy)
        mask = (s > 0.02) & (side * (xx - edge) >= 0) & (side * (xx - edge) < band)
        stripes = ((1.0 / np.maximum(s, 1e-3)) * 3.0) % 1.0 < 0.5
        if rng.random() < 0.6:
            albedo = np.where(stripes[..., None], np.float32([0.85, 0.12, 0.1]), np.float32([0.92, 0.92, 0.9]))
        else:
            albedo = np.where(stripes[..., None], np.float32([0.78, 0.76, 0.72]), np.float32([0.62, 0.6, 0.58]))
        albedo = np.broadcast_to(albedo, (height, width, 3))
        canvas.paint(
            (0, 0, np.broadcast_to(mask, (height, width))),
            albedo,
            road_temperature + 0.012,
            label=SEG["curve"],
            night_gain=0.35,
        )


def _draw_guardrail(canvas, rng, road, side):
    """A corrugated metal rail on posts along one road edge; cold (dark) in the infrared."""
    height, width = canvas.height, canvas.width
    xx = np.arange(width, dtype=np.float32) + 0.5
    yy = np.arange(height, dtype=np.float32)[:, None] + 0.5
    bottom_x = (road.left_bottom if side < 0 else road.right_bottom) + side * 0.05 * width
    span = bottom_x - road.vx
    s_col = (xx - road.vx) / span  # perspective scale of the ground point under each column
    valid = (s_col > 0.03) & (s_col < 1.6)
    ground_row = road.row_at_scale(s_col)
    rail_height = 0.16 * height * s_col
    top, beam_bottom = ground_row - rail_height, ground_row - 0.55 * rail_height
    beam = (yy >= top) & (yy < beam_bottom)
    posts = (((1.0 / np.maximum(s_col, 1e-3)) * 4.0) % 1.0 < 0.18) & (yy >= top) & (yy < ground_row)
    mask = valid[None, :] & (beam | posts)
    ridge = 0.55 + 0.3 * (np.cos((yy - top) / np.maximum(rail_height, 1.0) * 4 * np.pi) > 0)
    albedo = np.broadcast_to((ridge * np.float32(0.95))[..., None] * np.float32([1.0, 1.0, 1.05]), (height, width, 3))
    canvas.paint((0, 0, mask), albedo, rng.uniform(0.1, 0.16), label=SEG["guardrail"], night_gain=0.08)


def _place_on_road(rng, road, s, lo=0.05, hi=0.95):
    row = road.row_at_scale(s)
    left, right = float(road.left(row)), float(road.right(row))
    return row, left + rng.uniform(lo, hi) * (right - left)


def _place_beside_road(rng, road, s):
    row = road.row_at_scale(s)
    if rng.random() < 0.5:
        return row, float(road.left(row)) - rng.uniform(0.02, 0.25) * road.width * s - 1
    return row, float(road.right(row)) + rng.uniform(0.02, 0.25) * road.width * s + 1


def _objects_for_segmentation(rng, canvas, road, road_t, night):
    """(bottom row, draw callable) pairs for the MFNet classes; cars, people and bikes get object ids (crossover)."""
    height = canvas.height
    items = []
    for _ in range(rng.integers(0, 4)):
        s = rng.uniform(0.12, 1.0)
        row, x = _place_on_road(rng, road, s)
        car = canvas.new_instance()
        items.append((row, partial(draw_car, canvas, rng, row, x, 0.3 * height * s, SEG["car"], car, night)))
    for _ in range(rng.integers(1, 5) if rng.random() < 0.85 else 0):
        s = rng.uniform(0.1, 1.0)
        row, x = _place_beside_road(rng, road, s) if rng.random() < 0.5 else _place_on_road(rng, road, s)
        person = canvas.new_instance()
        items.append((row, partial(draw_person, canvas, rng, row, x, 0.5 * height * s, SEG["person"], person)))
    for _ in range(rng.integers(1, 3) if rng.random() < 0.5 else 0):
        s = rng.uniform(0.15, 1.0)
        low, high = (0.0, 0.25) if rng.random() < 0.5 else (0.75, 1.0)
        row, x = _place_on_road(rng, road, s, low, high)
        bike = canvas.new_instance()
        items.append((row, partial(draw_bike, canvas, rng, row, x, 0.25 * height * s, SEG["bike"], bike)))
        if rng.random() < 0.5:  # a rider, drawn after (over) the bike: items of one row keep their order
            rider = partial(
                draw_person,
                canvas,
                rng,
                row - 0.15 * height * s,
                x,
                0.38 * height * s,
                SEG["person"],
                canvas.new_instance(),
            )
            items.append((row, rider))
    if rng.random() < 0.7:  # a line of cones receding from the camera
        s0, x_frac = rng.uniform(0.15, 0.9), rng.uniform(0.1, 0.9)
        for k in range(rng.integers(1, 6)):
            s = s0 * (1.0 + 0.25 * k)
            if s > 1.05:
                break
            row = road.row_at_scale(s)
            x = float(road.left(row)) + x_frac * float(road.right(row) - road.left(row))
            items.append((row, partial(draw_cone, canvas, rng, row, x, 0.14 * height * s, road_t)))
    if rng.random() < 0.4:
        row = road.row_at_scale(rng.uniform(0.2, 0.95))
        items.append((row, partial(draw_bump, canvas, road, row, road_t)))
    for _ in range(rng.integers(1, 4) if rng.random() < 0.45 else 0):
        s = rng.uniform(0.2, 1.0)
        low, high = (0.02, 0.15) if rng.random() < 0.5 else (0.85, 0.98)
        row, x = _place_on_road(rng, road, s, low, high)
        items.append((row, partial(draw_car_stop, canvas, rng, row, x, 0.2 * height * s, road_t)))
    return items


def _objects_for_detection(rng, canvas, road, road_t, night):
    """(bottom row, draw callable) pairs for the M3FD classes, plus unboxed cones as clutter."""
    height = canvas.height
    items = []

    def add(count, s_range, placer, class_name, painter, size, **kwargs):
        for _ in range(count):
            s = rng.uniform(*s_range)
            row, x = placer(rng, road, s)
            instance = canvas.new_instance(class_name)
            items.append((row, partial(painter, canvas, rng, row, x, size * height * s, instance=instance, **kwargs)))

    add(rng.integers(0, 4), (0.1, 1.0), _place_on_road, "Car", draw_car, 0.3, label=None, night=night)
    people = rng.integers(0, 4) if rng.random() < 0.85 else 0
    add(people, (0.1, 1.0), _place_beside_road, "People", draw_person, 0.5, label=None)
    add(int(rng.random() < 0.3), (0.15, 0.8), _place_on_road, "Bus", draw_bus, 0.55, night=night)
    add(int(rng.random() < 0.3), (0.15, 0.8), _place_on_road, "Truck", draw_bus, 0.5, night=night, truck=True)
    add(int(rng.random() < 0.4), (0.15, 1.0), _place_on_road, "Motorcycle", draw_bike, 0.26, label=None, motor=True)
    lamps = rng.integers(0, 3) if rng.random() < 0.6 else 0
    add(lamps, (0.1, 0.7), _place_beside_road, "Lamp", draw_lamp, 1.1, night=night)
    for _ in range(rng.integers(0, 3)):
        s = rng.uniform(0.15, 1.0)
        row, x = _place_on_road(rng, road, s)
        items.append((row, partial(draw_cone, canvas, rng, row, x, 0.14 * height * s, road_t)))
    return items


def _glare(height, width, lights):
    """Sum of Gaussian glare blobs, float32 (H, W, 3); each blob is evaluated on a 3-sigma window."""
    out = np.zeros((height, width, 3), np.float32)
    for y, x, radius, intensity, rgb in lights:
        y0, y1 = max(int(y - 3 * radius), 0), min(int(y + 3 * radius) + 1, height)
        x0, x1 = max(int(x - 3 * radius), 0), min(int(x + 3 * radius) + 1, width)
        if y0 >= y1 or x0 >= x1:
            continue
        yy = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5
        xx = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5
        blob = intensity * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * radius**2))
        out[y0:y1, x0:x1] += blob[..., None] * np.float32(rgb)
    return out


def _light_visible(rng, canvas, night):
    """Visible image (H, W, 3) float in [0, 1] from the albedo: daylight, or night with glare and noise."""
    albedo = canvas.albedo
    if not night:
        gain = rng.uniform(0.85, 1.1)
        shade = np.linspace(1.05, 0.95, canvas.height, dtype=np.float32)[:, None, None]
        visible = albedo * gain * shade + rng.normal(0, 0.012, albedo.shape).astype(np.float32)
        return np.clip(visible, 0, 1)
    ambient = rng.uniform(0.07, 0.12)
    illumination = (ambient + canvas.night_gain)[..., None] * np.float32([0.9, 0.95, 1.1])
    visible = albedo * illumination + _glare(canvas.height, canvas.width, canvas.lights)
    noise = rng.normal(0, rng.uniform(0.04, 0.07), albedo.shape[:2] + (1,)).astype(np.float32)
    chroma = rng.normal(0, 0.02, albedo.shape).astype(np.float32)
    return np.clip(visible + noise + chroma, 0, 1)


def _render_infrared(rng, canvas, misregistration_px):
    """Infrared image (H, W) float in [0, 1]: blurred temperature, fixed-pattern and thermal noise, shift."""
    height, width = canvas.height, canvas.width
    small = Image.fromarray(canvas.temperature).resize((max(width // 2, 1), max(height // 2, 1)), Image.BILINEAR)
    infrared = np.asarray(small.resize((width, height), Image.BILINEAR), np.float32).copy()
    infrared += 0.02 * (smooth_noise(rng, height, width, max(4, width // 8)) - 0.5)
    infrared += rng.normal(0, 0.006, (1, width)).astype(np.float32)
    infrared += rng.normal(0, 0.012, (height, width)).astype(np.float32)
    if misregistration_px > 0:
        infrared = shift(infrared, *rng.integers(-misregistration_px, misregistration_px + 1, size=2))
    return np.clip(infrared, 0, 1)


def _to_uint8(image):
    return (image * 255.0 + 0.5).astype(np.uint8)


def _impair_images(plan, canvas, night, horizon, visible, infrared, applied):
    """Apply the planned glare, misregistration and dropout to the float images; records go into ``applied``."""
    if "glare" in plan:
        lights = glare_lights(plan["glare"], canvas.height, canvas.width, night, canvas.lights, horizon)
        visible = np.clip(visible + _glare(canvas.height, canvas.width, lights), 0, 1)
        applied["glare"] = {"blobs": [[round(float(v), 2) for v in light[:3]] for light in lights]}
    if "misregistration" in plan:
        dy, dx = misregistration_offset(plan["misregistration"])
        infrared = shift(infrared, dy, dx)
        applied["misregistration"] = {"dy": dy, "dx": dx}
    if "dropout" in plan:
        visible, infrared, applied["dropout"] = degrade(plan["dropout"], visible, infrared)
    return visible, infrared


def render_scene(
    rng, height, width, night, task="segmentation", misregistration_px=0, impairments="none", impairment_rng=None
) -> Scene:
    """Render one scene with the random generator ``rng``.

    ``task="segmentation"`` draws MFNet's classes (``label`` filled, no boxes); ``"detection"`` draws M3FD's
    classes (boxes filled, ``label`` all 0). ``misregistration_px`` shifts the infrared image by a random integer
    offset of at most that many pixels per axis (labels and boxes follow the visible image).
    ``impairments`` (``"none"``, ``"realistic"`` or ``{name: rate}``, see :mod:`.synthetic_impairments`) are
    drawn from ``impairment_rng`` (required unless ``"none"``), never from ``rng``: the base scene is the same.
    """
    if task not in ("segmentation", "detection"):
        raise ValueError(f"task must be 'segmentation' or 'detection', got {task!r}")
    rates = resolve_impairments(impairments)
    if impairment_rng is None and any(rates.values()):
        raise ValueError("impairment_rng is required when impairments are not 'none'")
    plan = plan_impairments(impairment_rng, rates, night) if any(rates.values()) else {}
    canvas = Canvas(height, width)
    road = _Road(rng, height, width)
    road_t = rng.uniform(0.44, 0.52)
    _draw_background(canvas, rng, road, road_t)
    background_t = canvas.temperature.copy() if "crossover" in plan else None
    if task == "segmentation":
        for side in (-1, 1):
            if rng.random() < 0.3:
                _draw_guardrail(canvas, rng, road, side)
        _draw_curbs(canvas, rng, road, road_t)
        items = _objects_for_segmentation(rng, canvas, road, road_t, night)
    else:
        if rng.random() < 0.3:
            _draw_guardrail(canvas, rng, road, -1 if rng.random() < 0.5 else 1)
        items = _objects_for_detection(rng, canvas, road, road_t, night)
    for _, draw in sorted(items, key=lambda item: item[0]):
        draw()
    if task == "segmentation":
        boxes, classes = np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)
        label = canvas.label
    else:
        boxes, classes = canvas.boxes()
        label = np.zeros((height, width), np.uint8)
    applied = {}
    if "crossover" in plan:
        crossed = cross_over(plan["crossover"], canvas.temperature, background_t, canvas.instance)
        if crossed:
            applied["crossover"] = {"objects": crossed}
    visible = _light_visible(rng, canvas, night)
    infrared = _render_infrared(rng, canvas, misregistration_px)
    visible, infrared = _impair_images(plan, canvas, night, road.horizon, visible, infrared, applied)
    return Scene(_to_uint8(visible), _to_uint8(infrared), label, boxes, classes, bool(night), applied)
