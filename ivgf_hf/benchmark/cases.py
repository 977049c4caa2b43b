"""Cases: one phase ("inference" or "training") of one model variant, or one AGF memory measurement, run in this
process (:func:`run_case`) or in a fresh one (:func:`run_in_subprocess`)."""

import json
import subprocess
import sys
import time
from functools import partial

import torch
from torch import nn

from ..presets import get_config
from ..training.model_setup import enable_gradient_checkpointing
from .agf import measure_agf_case
from .measure import autocast, clock, measure_matmul_throughput, peak_memory_bytes, reset_peak_memory, time_calls
from .profiling import count_flops, module_groups, op_profile, parameter_counts, time_split
from .settings import DTYPES, NUM_LABELS, SCHEDULE_ITERATIONS, VARIANTS, BenchmarkSettings
from .tensor_memory import training_step_tensor_memory


def build_model(settings: BenchmarkSettings, variant: str) -> nn.Module:
    """The task model of ``variant`` for ``settings`` (random weights, seed 0), on its device and memory format."""
    config = get_config(settings.preset, num_labels=NUM_LABELS[settings.task], **VARIANTS[variant])
    torch.manual_seed(0)
    if settings.task == "segmentation":
        from ..modeling import IVGFForSemanticSegmentation as model_class
    else:
        from ..modeling.detection_ivgf import IVGFForObjectDetection as model_class
    model = model_class(config).to(settings.device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def make_batch(settings: BenchmarkSettings, config, with_labels: bool) -> dict:
    """Random normalised inputs (and labels): segmentation maps, or three boxes per image for detection."""
    generator = torch.Generator().manual_seed(0)
    size, batch = settings.size, settings.batch
    inputs = {
        "pixel_values": torch.randn(batch, config.num_channels, size, size, generator=generator),
        "pixel_values_ir": torch.randn(batch, config.num_channels_ir, size, size, generator=generator),
    }
    memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
    inputs = {k: v.to(settings.device).contiguous(memory_format=memory_format) for k, v in inputs.items()}
    if not with_labels:
        return inputs
    if settings.task == "segmentation":
        labels = torch.randint(0, config.num_labels, (batch, size, size), generator=generator)
        return {**inputs, "labels": labels.to(settings.device)}
    labels = []
    for _ in range(batch):
        centres = 0.3 + 0.4 * torch.rand(3, 2, generator=generator)
        sizes = 0.1 + 0.2 * torch.rand(3, 2, generator=generator)
        labels.append(
            {
                "class_labels": torch.randint(0, config.num_labels, (3,), generator=generator).to(settings.device),
                "boxes": torch.cat([centres, sizes], dim=1).to(settings.device),
            }
        )
    return {**inputs, "labels": labels}


def _dense_outputs(model: nn.Module, inputs: dict) -> dict:
    """Outputs compared between dtypes: the fused maps F1..F4 (flattened together) and the segmentation logits."""
    maps = model.ivgf(inputs["pixel_values"], inputs["pixel_values_ir"]).feature_maps
    outputs = {"fused_maps": torch.cat([m.float().flatten() for m in maps])}
    if hasattr(model, "decode_head"):
        outputs["logits"] = model(**inputs).logits.float()
    return outputs


def low_precision_error(model: nn.Module, inputs: dict, settings: BenchmarkSettings) -> dict:
    """Max abs difference of each dense output under the autocast of ``settings`` vs fp32, and relative to the
    largest fp32 value."""
    with torch.inference_mode():
        reference = _dense_outputs(model, inputs)
        with autocast(settings.device, settings.dtype):
            low = _dense_outputs(model, inputs)
    errors = {}
    for name, ref in reference.items():
        difference, scale = (low[name] - ref).abs().max().item(), ref.abs().max().item()
        errors[name] = {"max_abs": difference, "reference_max_abs": scale, "relative": difference / max(scale, 1e-30)}
    return errors


def graph_breaks(model: nn.Module, inputs: dict, settings: BenchmarkSettings) -> dict:
    """Graphs and graph breaks of ``torch.compile`` on the eager model's inference forward, through
    ``torch._dynamo.explain`` (tracing and one eager run, no code generation). Resets dynamo's caches."""
    with torch.inference_mode(), autocast(settings.device, settings.dtype):
        explained = torch._dynamo.explain(model)(**inputs)
    reasons = []
    for reason in explained.break_reasons:
        frame = reason.user_stack[-1] if reason.user_stack else None
        location = f"{frame.filename}:{frame.lineno}" if frame else None
        reasons.append({"reason": reason.reason, "location": location})
    return {
        "graph_count": explained.graph_count,
        "graph_break_count": explained.graph_break_count,
        "break_reasons": reasons,
    }


def _compiled(model: nn.Module, settings: BenchmarkSettings) -> nn.Module:
    """``torch.compile(model)`` when ``settings.compile``, else the model itself."""
    return torch.compile(model) if settings.compile else model


def _measure_inference(model: nn.Module, settings: BenchmarkSettings, device: torch.device) -> tuple:
    """Latency (s), images/s, peak memory, FLOPs, time split and op profile of the forward; with ``compile``, the
    graph breaks. Returns ``(result, timing)``, ``timing`` as :func:`time_calls` returns it."""
    model.eval()
    inputs = make_batch(settings, model.config, with_labels=False)
    runner = _compiled(model, settings)

    def forward(module):
        with torch.inference_mode(), autocast(settings.device, settings.dtype):
            return module(**inputs)

    memory = reset_peak_memory(device)
    timing = time_calls(partial(forward, runner), settings.warmup, settings.iterations, device)
    memory["peak_bytes"] = peak_memory_bytes(device)

    groups = module_groups(model)  # FLOPs, time split and op profile: the eager model
    flops = count_flops(partial(forward, model), groups)
    clocks = {"time_split_s": partial(clock, device)}
    if device.type == "cpu":
        clocks["time_split_cpu_s"] = time.process_time
    splits = time_split(partial(forward, model), groups, clocks, settings.iterations)
    result = {
        "latency_s": timing["median_s"],
        "latency_all_s": timing["times_s"],
        "images_per_s": settings.batch / timing["median_s"],
        "compile_s": timing["first_call_s"] if settings.compile else None,
        "memory": memory,
        "flops": flops,
        **splits,
        "op_profile": op_profile(partial(forward, model), device),
    }
    if settings.compile:  # after the timed calls: explain resets the compiled model's caches
        result["graph_breaks"] = graph_breaks(model, inputs, settings)
    if settings.dtype != "fp32":
        result["low_precision_error"] = low_precision_error(model, inputs, settings)
    return result, timing


def _training_setup(model: nn.Module, settings: BenchmarkSettings) -> tuple:
    """Put ``model`` in training mode (gradient checkpointing per ``settings``); returns the AdamW optimizer that
    ``ivgf train`` uses and ``loss_of(module)``, the loss of one labelled batch under the run's autocast."""
    model.train()
    if settings.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    batch = make_batch(settings, model.config, with_labels=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)

    def loss_of(module: nn.Module) -> torch.Tensor:
        with autocast(settings.device, settings.dtype):
            return module(**batch).loss

    return optimizer, loss_of


def _measure_training(model: nn.Module, settings: BenchmarkSettings, device: torch.device) -> tuple:
    """Step time (s, forward + backward + AdamW), images/s, hours of the paper's schedule and peak memory; then one
    step counted op by op (tensor memory by part, :func:`training_step_tensor_memory`) and one under the FLOP
    counter. Returns ``(result, timing)``, ``timing`` as :func:`time_calls` returns it."""
    optimizer, loss_of = _training_setup(model, settings)
    runner = _compiled(model, settings)

    def step(module):
        optimizer.zero_grad(set_to_none=True)
        loss_of(module).backward()
        optimizer.step()

    memory = reset_peak_memory(device)
    timing = time_calls(partial(step, runner), settings.warmup, settings.iterations, device)
    memory["peak_bytes"] = peak_memory_bytes(device)
    tensor_memory = training_step_tensor_memory(model, optimizer, partial(loss_of, model))
    flops = count_flops(partial(step, model))
    result = {
        "step_s": timing["median_s"],
        "step_all_s": timing["times_s"],
        "images_per_s": settings.batch / timing["median_s"],
        "compile_s": timing["first_call_s"] if settings.compile else None,
        "schedule_hours": timing["median_s"] * SCHEDULE_ITERATIONS / 3600,
        "memory": memory,
        "tensor_memory": tensor_memory,
        "flops": {"total": flops["total"]},
        "gradient_checkpointing": settings.gradient_checkpointing,
    }
    return result, timing


def _measure_memory(model: nn.Module, settings: BenchmarkSettings) -> dict:
    """Tensor memory by part (one training step, forward + backward + AdamW, counted op by op) and FLOPs (forward
    + backward) of the training step, untimed: what a GPU needs, measured on any device."""
    optimizer, loss_of = _training_setup(model, settings)
    memory = training_step_tensor_memory(model, optimizer, partial(loss_of, model))
    # A second step for the FLOPs: the FLOP counter's module hooks keep tensors alive under gradient checkpointing.
    flops = count_flops(lambda: loss_of(model).backward())
    return {
        "tensor_memory": memory,
        "flops": {"total": flops["total"]},
        "gradient_checkpointing": settings.gradient_checkpointing,
    }


def measure_model_case(case: dict) -> dict:
    """One phase ("inference", "training" or "memory") of one variant, in this process. ``case``: ``settings``
    (resolved, as a dict), ``variant``, ``phase``."""
    settings = BenchmarkSettings(**case["settings"])
    torch.set_num_threads(settings.threads)
    device = torch.device(settings.device)
    model = build_model(settings, case["variant"])
    sizes = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "parameters_by_part": parameter_counts(model),
        "threads": torch.get_num_threads(),
    }
    if case["phase"] == "memory":
        return {**_measure_memory(model, settings), **sizes}
    before = measure_matmul_throughput(device, DTYPES[settings.dtype], settings.matmul_size)
    measure = _measure_inference if case["phase"] == "inference" else _measure_training
    result, timing = measure(model, settings, device)
    after = measure_matmul_throughput(device, DTYPES[settings.dtype], settings.matmul_size)
    # The better of the two is the ceiling the device reached around this case: a conservative utilisation.
    matmul = {
        **before,
        "flop_per_s": max(before["flop_per_s"], after["flop_per_s"]),
        "flop_per_cpu_s": max(before["flop_per_cpu_s"] or 0, after["flop_per_cpu_s"] or 0) or None,
        "before_flop_per_s": before["flop_per_s"],
        "after_flop_per_s": after["flop_per_s"],
    }
    flops = result["flops"]["total"]
    achieved = flops / timing["median_s"]
    cpu_seconds = timing["median_cpu_s"]
    on_cpu = device.type == "cpu" and cpu_seconds > 0 and matmul["flop_per_cpu_s"]
    return {
        **result,
        **sizes,
        "matmul": matmul,
        "achieved_flop_per_s": achieved,
        "utilisation": achieved / matmul["flop_per_s"],
        # FLOPs per CPU-second of this process against the matmul's: how well the cycles the process got were
        # used, independent of other load on a shared machine (CPU only).
        "cpu_seconds": cpu_seconds if device.type == "cpu" else None,
        "utilisation_cpu_time": flops / cpu_seconds / matmul["flop_per_cpu_s"] if on_cpu else None,
    }


def run_case(case: dict) -> dict:
    """Measure one case (``case["kind"]`` "model" or "agf") in this process."""
    if case["kind"] == "model":
        return measure_model_case(case)
    if case["kind"] == "agf":
        return measure_agf_case(case)
    raise ValueError(f"unknown case kind {case['kind']!r}; expected 'model' or 'agf'")


def run_in_subprocess(case: dict, timeout: float) -> dict:
    """:func:`run_case` in a fresh ``python -m ivgf_hf.benchmark`` process (``timeout`` in seconds); failures
    become an ``error`` entry."""
    command = [sys.executable, "-m", "ivgf_hf.benchmark", "--case", json.dumps(case)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        tail = (result.stderr.strip().splitlines() or ["no error output"])[-1]
        return {"error": f"failed (exit {result.returncode}): {tail}"}
    return json.loads(lines[-1])
