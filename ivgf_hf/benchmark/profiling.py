"""Where a forward spends its work: FLOPs (``torch.utils.flop_counter``), time and FLOPs per module group
(forward hooks), and the share of each op in a profiled call (``torch.profiler``)."""

import math
import statistics
from contextlib import ExitStack
from functools import partial
from typing import Callable, Optional

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .measure import synchronize
from .settings import MODULE_GROUPS


def _call_units(module: nn.Module) -> list:
    """The sub-modules a forward calls directly: children, with ModuleLists (never called) opened."""
    units = []
    for child in module.children():
        units.extend(_call_units(child) if isinstance(child, nn.ModuleList) else [child])
    return units


def parameter_counts(model: nn.Module) -> dict:
    """Parameters by part: the fused model's top-level modules (``ivgf.visible_encoder``, ``ivgf.fusions``, ...),
    then every other top-level module of the task model (heads), and ``total``."""
    counts = {}
    for name, parameter in model.named_parameters():
        parts = name.split(".")
        key = ".".join(parts[:2]) if parts[0] == "ivgf" else parts[0]
        counts[key] = counts.get(key, 0) + parameter.numel()
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts


def module_groups(model: nn.Module) -> dict:
    """Disjoint module lists per group of :data:`MODULE_GROUPS`: the encoders' stage modules, FEM, TEM, the
    fusions (AGF or sums), and the head (every child of the task model besides ``ivgf``)."""
    ivgf = model.ivgf
    encoders = [getattr(ivgf, f"{m}_encoder") for m in ("visible", "infrared") if hasattr(ivgf, f"{m}_encoder")]
    return {
        "encoders": [unit for encoder in encoders for unit in _call_units(encoder)],
        "fem": list(getattr(ivgf, "feature_enhancements", [])),
        "tem": list(getattr(ivgf, "token_enhancements", [])),
        "agf": list(getattr(ivgf, "fusions", [])),
        "head": [child for name, child in model.named_children() if name != "ivgf"],
    }


class ModuleGroupProbe:
    """Forward pre/post hooks that add ``measure()`` differences (seconds, FLOPs...) to each module's group.

    The modules must not nest (the groups of :func:`module_groups` do not). Use as a context manager.
    """

    def __init__(self, groups: dict, measure: Callable[[], float]):
        self.measure = measure
        self.totals = dict.fromkeys(groups, 0.0)
        self._starts = {}
        self._handles = []
        for group, modules in groups.items():
            for module in modules:
                self._handles.append(module.register_forward_pre_hook(self._start))
                self._handles.append(module.register_forward_hook(partial(self._stop, group)))

    def _start(self, module, args):
        self._starts[module] = self.measure()

    def _stop(self, group, module, args, output):
        self.totals[group] += self.measure() - self._starts.pop(module)

    def reset(self):
        """Set every group's total back to 0."""
        self.totals = dict.fromkeys(self.totals, 0.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()


def _attention_forward_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """softmax(Q K^T) V as two batched matmuls: 2 * B * heads * N * M * (d + d_v)."""
    *lead, tokens, dim = query_shape
    return 2 * math.prod(lead) * tokens * key_shape[-2] * (dim + value_shape[-1])


def _attention_backward_flops(grad_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    """Gradients of Q, K, V and the probabilities: 2 * B * heads * N * M * (2 d + 2 d_v) (no recomputation)."""
    *lead, tokens, dim = query_shape
    return 2 * math.prod(lead) * tokens * key_shape[-2] * (2 * dim + 2 * value_shape[-1])


def _flop_counter() -> FlopCounterMode:
    """FlopCounterMode that also counts the CPU flash attention kernels (torch registers only the GPU ones)."""
    aten = torch.ops.aten
    custom = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        custom[aten._scaled_dot_product_flash_attention_for_cpu] = _attention_forward_flops
        custom[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _attention_backward_flops
    return FlopCounterMode(display=False, custom_mapping=custom)


def count_flops(fn: Callable[[], object], groups: Optional[dict] = None) -> dict:
    """FLOPs of one ``fn()`` call (matmuls, convolutions, attention), total and per module group."""
    counter = _flop_counter()
    with ExitStack() as stack:
        stack.enter_context(counter)
        probe = stack.enter_context(ModuleGroupProbe(groups or {}, counter.get_total_flops))
        fn()
    return {"total": counter.get_total_flops(), "by_group": {k: int(v) for k, v in probe.totals.items()}}


def time_split(fn: Callable[[], object], groups: dict, clocks: dict, iterations: int) -> dict:
    """Median per-group seconds of ``fn()`` for each clock (name -> clock), with "total" and "other" (the rest)."""
    steps = {name: [] for name in clocks}
    with ExitStack() as stack:
        probes = {name: stack.enter_context(ModuleGroupProbe(groups, clock)) for name, clock in clocks.items()}
        for _ in range(iterations):
            starts = {name: clock() for name, clock in clocks.items()}
            for probe in probes.values():
                probe.reset()
            fn()
            for name, clock in clocks.items():
                steps[name].append({"total": clock() - starts[name], **probes[name].totals})
    splits = {}
    for name, records in steps.items():
        split = {key: statistics.median(record[key] for record in records) for key in records[0]}
        split["other"] = max(0.0, split["total"] - sum(split[group] for group in MODULE_GROUPS))
        splits[name] = split
    return splits


def op_profile(fn: Callable[[], object], device: torch.device, top: int = 6) -> dict:
    """Share of each op's self time in one profiled call (device time on CUDA), with ``aten::copy_`` separately."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        fn()
        synchronize(device)
    attribute = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = [(e.key, getattr(e, attribute, 0.0)) for e in prof.key_averages()]
    total = sum(t for _, t in events) or 1.0
    events.sort(key=lambda item: -item[1])
    return {
        "copy_share": sum(t for k, t in events if k == "aten::copy_") / total,
        "top_ops": {k: t / total for k, t in events[:top]},
    }
