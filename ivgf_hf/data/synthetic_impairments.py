"""Impairments of SynthRGBT: what real RGB-T pairs have and a plain sum of the two modalities handles badly.

Each image draws, from a generator of its own (so the base scene does not change), which impairments it gets;
each impairment then draws its parameters from a stream of its own (so adding one never changes another):

* ``glare``: by day 1-2 large sun-glare / over-exposure blobs saturate the visible image to white; at night
  every light blooms and 1-2 pairs of oncoming headlights saturate wide regions around them.
* ``crossover`` (day only): some hot objects (people, cars, bikes; in detection every boxed class) take the
  temperature of what is behind them, so only the visible image shows them.
* ``dropout``: one modality is degraded for the whole image (visible: nearly black or very noisy; infrared:
  very noisy or a dead, flat sensor).
* ``misregistration``: the infrared image is shifted by up to ``MISREGISTRATION_MAX_PX`` pixels per axis (never
  by (0, 0)) against the visible image and the labels.

Images are float arrays in [0, 1]: visible (H, W, 3), infrared and temperature (H, W).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = [
    "IMPAIRMENTS",
    "REALISTIC_RATES",
    "MISREGISTRATION_MAX_PX",
    "resolve_impairments",
    "plan_impairments",
    "cross_over",
    "glare_lights",
    "misregistration_offset",
    "shift",
    "degrade",
]

IMPAIRMENTS = ("glare", "crossover", "dropout", "misregistration")
# Per-image probabilities; crossover applies to day scenes only (0.5 of them: a quarter of all images at 50/50).
REALISTIC_RATES = {"glare": 0.25, "crossover": 0.5, "dropout": 0.2, "misregistration": 0.3}
MISREGISTRATION_MAX_PX = 4
CROSSOVER_OBJECT_RATE = 0.7  # share of the hot objects of a crossover scene that cross over


def resolve_impairments(impairments) -> dict:
    """``{name: rate}`` for every impairment from ``"none"``, ``"realistic"`` or a dict of rates in [0, 1]."""
    if isinstance(impairments, str):
        presets = {"none": dict.fromkeys(IMPAIRMENTS, 0.0), "realistic": REALISTIC_RATES}
        if impairments not in presets:
            raise ValueError(f"impairments must be 'none', 'realistic' or a dict of rates, got {impairments!r}")
        return dict(presets[impairments])
    if not isinstance(impairments, Mapping):
        raise ValueError(f"impairments must be 'none', 'realistic' or a dict of rates, got {impairments!r}")
    rates = dict.fromkeys(IMPAIRMENTS, 0.0)
    for name, rate in impairments.items():
        if name not in rates:
            raise ValueError(f"unknown impairment {name!r}; known: {', '.join(IMPAIRMENTS)}")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate of impairment {name!r} must be a number in [0, 1], got {rate!r}")
        rates[name] = float(rate)
    return rates


def plan_impairments(rng, rates, night) -> dict:
    """``{name: generator}`` of the impairments one image gets (one uniform draw each; no crossover at night)."""
    draws, seeds = rng.random(len(IMPAIRMENTS)), rng.integers(2**63, size=len(IMPAIRMENTS))
    return {
        name: np.random.default_rng(int(seed))
        for name, draw, seed in zip(IMPAIRMENTS, draws, seeds)
        if draw < rates[name] and not (night and name == "crossover")
    }


def cross_over(rng, temperature, background, objects) -> int:
    """Give some objects the background's temperature (+-0.02), in place; returns how many (0 if none exist).

    ``temperature`` and ``background`` (the temperature before objects were drawn): float32 (H, W);
    ``objects``: int32 (H, W) object ids, 0 where there is none.
    """
    ids = np.unique(objects[objects > 0])
    if ids.size == 0:
        return 0
    chosen = ids[rng.random(ids.size) < CROSSOVER_OBJECT_RATE]
    if chosen.size == 0:
        chosen = rng.choice(ids, 1)
    offset = np.zeros(int(ids[-1]) + 1, np.float32)
    offset[chosen] = rng.uniform(-0.02, 0.02, chosen.size)
    mask = np.isin(objects, chosen)
    temperature[mask] = background[mask] + offset[objects[mask]]
    return int(chosen.size)


def glare_lights(rng, height, width, night, lights, horizon) -> list:
    """Glare blobs ``(y, x, radius, intensity, rgb)`` (pixels; intensity >= 1.5 saturates the centre).

    Day: 1-2 sun-glare blobs of radius 10-22 % of the shorter side. Night: a bloom 2.5x wider than each of the
    scene's ``lights`` and 1-2 pairs of oncoming headlights on the ground below the ``horizon`` row.
    """
    if not night:
        count = int(rng.integers(1, 3))
        ys, xs = rng.uniform(0.15, 0.9, count) * height, rng.uniform(0.05, 0.95, count) * width
        radii = rng.uniform(0.1, 0.22, count) * min(height, width)
        return [(y, x, r, rng.uniform(2.0, 4.0), (1.0, 0.98, 0.92)) for y, x, r in zip(ys, xs, radii)]
    blooms = [(y, x, 2.5 * radius, rng.uniform(1.5, 3.0), (1.0, 0.9, 0.8)) for y, x, radius, _, _ in lights]
    headlights = []
    for _ in range(int(rng.integers(1, 3))):
        s = rng.uniform(0.1, 0.8)  # perspective scale of the oncoming car: 0 at the horizon, 1 at the bottom
        y, x = horizon + s * (height - horizon), rng.uniform(0.15, 0.85) * width
        half_gap, radius, intensity = 0.12 * height * s + 1, 0.1 * height * s + 2, rng.uniform(2.5, 4.0)
        headlights += [(y, x + side * half_gap, radius, intensity, (1.0, 0.97, 0.9)) for side in (-1, 1)]
    return blooms + headlights


def misregistration_offset(rng) -> tuple:
    """A random integer shift ``(dy, dx)`` with ``|dy|, |dx| <= MISREGISTRATION_MAX_PX``, not ``(0, 0)``."""
    m = MISREGISTRATION_MAX_PX
    offsets = np.argwhere(np.ones((2 * m + 1, 2 * m + 1), bool)) - m
    dy, dx = offsets[np.any(offsets != 0, axis=1)][rng.integers(len(offsets) - 1)]
    return int(dy), int(dx)


def shift(image, dy, dx):
    """``image`` (H, W, ...) moved down by ``dy`` and right by ``dx`` pixels; the border rows/columns repeat."""
    height, width = image.shape[:2]
    rows = np.clip(np.arange(height) - dy, 0, height - 1)
    cols = np.clip(np.arange(width) - dx, 0, width - 1)
    return image[rows[:, None], cols[None, :]]


def degrade(rng, visible, infrared) -> tuple:
    """Degrade one modality (50/50) for the whole image; returns ``(visible, infrared, record)``.

    The record is ``{"modality", "kind", "level"}``: visible ``"dark"`` (level: remaining gain) or ``"noise"``
    (level: noise sigma); infrared ``"noise"`` (sigma, plus column stripes) or ``"flat"`` (the dead sensor's
    grey level).
    """
    if rng.random() < 0.5:
        kind = "dark" if rng.random() < 0.5 else "noise"
        visible, level = _degrade_visible(rng, visible, kind)
        return visible, infrared, {"modality": "visible", "kind": kind, "level": round(level, 4)}
    kind = "noise" if rng.random() < 0.5 else "flat"
    infrared, level = _degrade_infrared(rng, infrared, kind)
    return visible, infrared, {"modality": "infrared", "kind": kind, "level": round(level, 4)}


def _degrade_visible(rng, visible, kind):
    """Nearly black (2-6 % gain plus noise) or very noisy (sigma 0.25-0.4) visible image, and that level."""
    if kind == "dark":
        level = rng.uniform(0.02, 0.06)
        degraded = visible * level + rng.normal(0, 0.015, visible.shape)
    else:
        level = rng.uniform(0.25, 0.4)
        degraded = visible + rng.normal(0, level, visible.shape)
    return np.clip(degraded, 0, 1).astype(np.float32), float(level)


def _degrade_infrared(rng, infrared, kind):
    """Very noisy (sigma 0.2-0.35, column stripes) or flat (grey 0.2-0.6) infrared image, and that level."""
    height, width = infrared.shape
    if kind == "noise":
        level = rng.uniform(0.2, 0.35)
        degraded = infrared + rng.normal(0, level, (height, width)) + rng.normal(0, 0.1, (1, width))
    else:
        level = rng.uniform(0.2, 0.6)
        degraded = level + rng.normal(0, 0.01, (height, width))
    return np.clip(degraded, 0, 1).astype(np.float32), float(level)
