"""AdamW with layer-wise learning-rate decay, and the warm-up + polynomial schedule of the paper's recipes.

Layer-wise decay follows ConvMAE's segmentation recipe (mmseg ``LayerDecayOptimizerConstructor``), applied to each
encoder separately with its own depth ``D`` (number of transformer blocks, ``blocks3``):

* layer 0: ``pos_embed``, every ``patch_embed*``, ``blocks1``, ``blocks2``;
* layer ``i + 1``: ``blocks3.i``;
* layer ``D + 1`` (the top): everything else in the encoder (e.g. ``stage4``, the stride-32 projection), and every
  parameter outside the encoders (FEM, TEM, AGF fusion modules, heads).

A parameter of layer ``l`` gets ``lr x decay ** (D + 1 - l)``. Weight decay is 0 for 1-D parameters (norms,
layer-scale, biases) and for names ending in ``.bias``; ``pos_embed`` and the relative-position tables keep it, as
they do in ConvMAE's code (its ``pos_embed`` exception compares the bare name and never matches).
"""

import re

import torch
from torch import nn

from ..modeling.encoder_ivgf import IVGFEncoder

__all__ = [
    "encoder_layer_id",
    "layer_decay_parameter_groups",
    "adam_kernel_flags",
    "build_optimizer",
    "PolynomialWarmupSchedule",
    "build_scheduler",
]

_LAYER_ZERO = re.compile(r"^(pos_embed|patch_embed\d*|blocks1|blocks2)(\.|$)")
_TRANSFORMER_BLOCK = re.compile(r"^blocks3\.(\d+)\.")


def encoder_layer_id(name: str, depth: int) -> int:
    """Layer of the encoder parameter ``name`` (relative to the encoder) in an encoder of ``depth`` blocks3."""
    if _LAYER_ZERO.match(name):
        return 0
    block = _TRANSFORMER_BLOCK.match(name)
    if block:
        return int(block.group(1)) + 1
    return depth + 1


def _encoders(model: nn.Module) -> dict:
    """``{module name prefix with trailing dot: depth}`` of every IVGF encoder inside ``model``."""
    return {
        f"{name}.": len(module.blocks3) for name, module in model.named_modules() if isinstance(module, IVGFEncoder)
    }


def _no_weight_decay(name: str, parameter: torch.Tensor) -> bool:
    return parameter.ndim <= 1 or name.endswith(".bias")


def layer_decay_parameter_groups(
    model: nn.Module, learning_rate: float, weight_decay: float, layer_decay: float
) -> list:
    """AdamW parameter groups: one per (lr scale, weight decay) pair, each with its ``lr`` already scaled.

    Each group also carries ``lr_scale`` and ``group_name`` (e.g. ``"scale0.0317_decay"``) for logging. Frozen
    parameters (``requires_grad=False``) are left out.

    Returns:
        A list of dicts ``{"params", "lr", "weight_decay", "lr_scale", "group_name"}`` sorted by lr scale.
    """
    if not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    encoders = _encoders(model)
    groups = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        scale = 1.0
        for prefix, depth in encoders.items():
            if name.startswith(prefix):
                scale = layer_decay ** (depth + 1 - encoder_layer_id(name[len(prefix) :], depth))
                break
        decay = 0.0 if _no_weight_decay(name, parameter) else weight_decay
        key = (scale, decay)
        if key not in groups:
            groups[key] = {
                "params": [],
                "param_names": [],
                "lr": learning_rate * scale,
                "weight_decay": decay,
                "lr_scale": scale,
                "group_name": f"scale{scale:.4g}_{'decay' if decay else 'no_decay'}",
            }
        groups[key]["params"].append(parameter)
        groups[key]["param_names"].append(name)
    return [groups[key] for key in sorted(groups, key=lambda k: (k[0], k[1]))]


def adam_kernel_flags(implementation: str, device: torch.device) -> dict:
    """AdamW keyword arguments of the recipe's ``adam_implementation`` for parameters trained on ``device``.

    ``"foreach"``: multi-tensor kernels (a few launches per parameter group); ``"fused"``: one fused kernel per
    group (CUDA, CPU and other devices with a fused AdamW in torch); ``"auto"``: fused on CUDA, foreach elsewhere.
    """
    if implementation == "auto":
        implementation = "fused" if torch.device(device).type == "cuda" else "foreach"
    if implementation == "foreach":
        return {"foreach": True}
    if implementation == "fused":
        return {"fused": True}
    raise ValueError(f"adam_implementation must be 'foreach', 'fused' or 'auto', got {implementation!r}")


def build_optimizer(model: nn.Module, recipe, device=None) -> torch.optim.AdamW:
    """AdamW over :func:`layer_decay_parameter_groups` with the recipe's lr, weight decay, betas, epsilon and
    ``adam_implementation``; ``device`` is where the parameters will train (default: where they are now)."""
    groups = layer_decay_parameter_groups(model, recipe.learning_rate, recipe.weight_decay, recipe.layer_decay)
    if device is None:
        device = next(model.parameters()).device
    return torch.optim.AdamW(
        groups,
        lr=recipe.learning_rate,
        betas=tuple(recipe.adam_betas),
        eps=recipe.adam_epsilon,
        **adam_kernel_flags(recipe.adam_implementation, device),
    )


class PolynomialWarmupSchedule:
    """Learning-rate factor at optimizer step ``step`` (0-based), as mmcv's ``PolyLrUpdaterHook`` with linear warm-up.

    ``poly = (1 - min_ratio) * (1 - step / max_steps) ** power + min_ratio`` and, during the first ``warmup_steps``,
    ``factor = poly * (1 - (1 - step / warmup_steps) * (1 - warmup_ratio))``; after them ``factor = poly``. The
    factor multiplies each parameter group's initial lr (so layer-wise scales are kept).
    """

    def __init__(self, max_steps: int, warmup_steps: int, warmup_ratio: float, power: float, min_ratio: float = 0.0):
        if max_steps < 1 or warmup_steps < 0:
            raise ValueError(f"need max_steps >= 1 and warmup_steps >= 0, got {max_steps}, {warmup_steps}")
        self.max_steps = max_steps
        self.warmup_steps = warmup_steps
        self.warmup_ratio = warmup_ratio
        self.power = power
        self.min_ratio = min_ratio

    def __call__(self, step: int) -> float:
        progress = min(step, self.max_steps) / self.max_steps
        factor = (1.0 - self.min_ratio) * (1.0 - progress) ** self.power + self.min_ratio
        if step < self.warmup_steps:
            factor *= 1.0 - (1.0 - step / self.warmup_steps) * (1.0 - self.warmup_ratio)
        return factor


def build_scheduler(optimizer: torch.optim.Optimizer, recipe) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` with :class:`PolynomialWarmupSchedule`; step it once per optimizer step (not per process)."""
    schedule = PolynomialWarmupSchedule(
        recipe.max_steps,
        recipe.warmup_steps,
        recipe.warmup_ratio,
        recipe.poly_power,
        recipe.min_lr / recipe.learning_rate,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
