"""Cutout&mix augmentation (CMA, paper section III-E, Fig. 6), vectorised over a batch.

Two parts, each applied to a sample with its own probability:

* **cutmix** swaps random rectangles between the two modalities at the same location: inside a rectangle the
  visible image receives the infrared patch replicated to its 3 channels, and the infrared image receives the
  grey level (ITU-R BT.601 luma, 0.299 R + 0.587 G + 0.114 B) of the visible patch;
* **cutout** blanks random rectangles in ONE modality, chosen per sample (visible with
  ``cutout_visible_prob``): the rectangles are filled with that modality's normalisation mean, i.e. exactly 0
  after normalisation.

Cutmix runs first, so a cutout rectangle stays blank. Both work on intensity images in [0, 1] (before
normalisation) and never touch labels. Rectangle sides are fractions of the image height / width, drawn
independently per rectangle; the number of rectangles is drawn uniformly from the inclusive ``*_count`` range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..modeling.image_processing_ivgf import IMAGENET_MEAN, INFRARED_MEAN
from ..modeling.modeling_ivgf import LUMA_WEIGHTS

__all__ = ["CutoutMixConfig", "CutoutMix", "CutoutMixMasks", "LUMA_WEIGHTS"]


@dataclass
class CutoutMixConfig:
    """Probabilities and size ranges of cutout&mix (the paper gives none; these defaults are this project's).

    Args:
        cutout_prob: probability that a sample gets cutout.
        cutout_count: (min, max) number of cutout rectangles, inclusive.
        cutout_size: (min, max) rectangle side as a fraction of the image side.
        cutout_visible_prob: probability that cutout hits the visible image (else the infrared one).
        cutmix_prob: probability that a sample gets cutmix.
        cutmix_count: (min, max) number of swapped rectangles, inclusive.
        cutmix_size: (min, max) rectangle side as a fraction of the image side.
    """

    cutout_prob: float = 0.5
    cutout_count: tuple = (1, 3)
    cutout_size: tuple = (0.05, 0.25)
    cutout_visible_prob: float = 0.5
    cutmix_prob: float = 0.5
    cutmix_count: tuple = (1, 3)
    cutmix_size: tuple = (0.1, 0.3)

    def __post_init__(self):
        for name in ("cutout_prob", "cutout_visible_prob", "cutmix_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("cutout_count", "cutmix_count"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"{name} must be (min, max) with 0 <= min <= max, got {getattr(self, name)}")
        for name in ("cutout_size", "cutmix_size"):
            low, high = getattr(self, name)
            if not 0.0 < low <= high <= 1.0:
                raise ValueError(f"{name} must be (min, max) fractions with 0 < min <= max <= 1, got {(low, high)}")


class CutoutMixMasks(NamedTuple):
    """Regions chosen for one batch: ``cutout`` and ``cutmix`` bool (B, 1, H, W); ``cutout_visible`` bool (B,)."""

    cutout: torch.Tensor
    cutout_visible: torch.Tensor
    cutmix: torch.Tensor


def _rectangles(batch, height, width, prob, count, size, generator):
    """Union of up to ``count[1]`` random rectangles per sample, for the samples drawn with ``prob``: (B, 1, H, W)."""
    applied = torch.rand(batch, generator=generator) < prob
    slots = max(int(count[1]), 1)
    n = torch.randint(int(count[0]), int(count[1]) + 1, (batch,), generator=generator)
    active = applied[:, None] & (torch.arange(slots)[None, :] < n[:, None])  # (B, K)
    low, high = size
    h = (low + (high - low) * torch.rand(batch, slots, generator=generator)) * height
    w = (low + (high - low) * torch.rand(batch, slots, generator=generator)) * width
    top = torch.rand(batch, slots, generator=generator) * (height - h)
    left = torch.rand(batch, slots, generator=generator) * (width - w)
    ys = torch.arange(height, dtype=torch.float32) + 0.5
    xs = torch.arange(width, dtype=torch.float32) + 0.5
    rows = ((ys >= top[..., None]) & (ys < (top + h)[..., None]) & active[..., None]).float()  # (B, K, H)
    cols = ((xs >= left[..., None]) & (xs < (left + w)[..., None])).float()  # (B, K, W)
    return (torch.bmm(rows.transpose(1, 2), cols) > 0)[:, None]  # rectangles covering each pixel > 0


class CutoutMix:
    """Cutout&mix on visible (B, 3, H, W) / infrared (B, 1, H, W) float images in [0, 1] (or unbatched).

    ``visible_fill`` (3 values) and ``infrared_fill`` (1 value) fill the cutout rectangles: pass the
    normalisation means so that blanked regions are 0 after normalisation.
    """

    def __init__(self, config=None, visible_fill=IMAGENET_MEAN, infrared_fill=INFRARED_MEAN):
        self.config = config if config is not None else CutoutMixConfig()
        self.visible_fill = torch.tensor(visible_fill, dtype=torch.float32).view(1, 3, 1, 1)
        self.infrared_fill = torch.tensor(infrared_fill, dtype=torch.float32).view(1, 1, 1, 1)
        self.luma = torch.tensor(LUMA_WEIGHTS, dtype=torch.float32).view(1, 3, 1, 1)

    def sample(self, batch, height, width, generator=None) -> CutoutMixMasks:
        """Draw the cutout / cutmix regions for ``batch`` images of ``height`` x ``width`` pixels."""
        c = self.config
        cutmix = _rectangles(batch, height, width, c.cutmix_prob, c.cutmix_count, c.cutmix_size, generator)
        cutout = _rectangles(batch, height, width, c.cutout_prob, c.cutout_count, c.cutout_size, generator)
        cutout_visible = torch.rand(batch, generator=generator) < c.cutout_visible_prob
        return CutoutMixMasks(cutout, cutout_visible, cutmix)

    def apply(self, visible, infrared, masks: CutoutMixMasks):
        """New visible / infrared tensors with the regions of ``masks`` swapped and blanked (inputs untouched)."""
        if masks.cutmix.any():
            grey = (visible * self.luma.to(visible.dtype)).sum(dim=1, keepdim=True)
            visible, infrared = (
                torch.where(masks.cutmix, infrared.expand_as(visible), visible),
                torch.where(masks.cutmix, grey, infrared),
            )
        if masks.cutout.any():
            on_visible = masks.cutout & masks.cutout_visible.view(-1, 1, 1, 1)
            on_infrared = masks.cutout & ~masks.cutout_visible.view(-1, 1, 1, 1)
            visible = torch.where(on_visible, self.visible_fill.to(visible.dtype), visible)
            infrared = torch.where(on_infrared, self.infrared_fill.to(infrared.dtype), infrared)
        return visible, infrared

    def __call__(self, visible, infrared, generator=None):
        """Augment a batch (B, C, H, W) or one sample (C, H, W); returns ``(visible, infrared)``."""
        unbatched = visible.dim() == 3
        if unbatched:
            visible, infrared = visible[None], infrared[None]
        if visible.shape[1] != 3 or infrared.shape[1] != 1 or visible.shape[-2:] != infrared.shape[-2:]:
            raise ValueError(
                f"expected visible (B, 3, H, W) and infrared (B, 1, H, W) of one size, "
                f"got {tuple(visible.shape)} and {tuple(infrared.shape)}"
            )
        masks = self.sample(visible.shape[0], visible.shape[-2], visible.shape[-1], generator)
        visible, infrared = self.apply(visible, infrared, masks)
        return (visible[0], infrared[0]) if unbatched else (visible, infrared)
