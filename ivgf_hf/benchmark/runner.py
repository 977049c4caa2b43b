"""One benchmark run: the machine, every model variant and phase, the AGF memory cases and the data pipeline."""

import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch

from ..presets import get_config
from .agf import naive_attention_estimate_bytes
from .cases import run_case, run_in_subprocess
from .report import loader_rate
from .settings import AGF_IMPLEMENTATIONS, AGF_STRIDE, DATA_SCRIPT, TASKS, VARIANTS, BenchmarkSettings


def _run_isolated_or_here(case: dict, settings: BenchmarkSettings) -> dict:
    """The case in a fresh process (``settings.isolate``) or in this one; an error becomes an ``error`` entry."""
    if settings.isolate:
        return run_in_subprocess(case, settings.timeout)
    try:
        return run_case(case)
    except Exception as error:  # reported in the table, the other cases still run
        return {"error": f"{type(error).__name__}: {error}"}


def _machine_info(settings: BenchmarkSettings) -> dict:
    """Device, its name, thread count, library versions and load average (1, 5, 15 min) at the start."""
    info = {
        "device": settings.device,
        "cpu_count": os.cpu_count(),
        "threads": settings.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if settings.device == "cuda":
        info.update(
            device_name=torch.cuda.get_device_name(),
            cuda=torch.version.cuda,
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
            tf32_cudnn=torch.backends.cudnn.allow_tf32,
        )
    else:
        info["device_name"] = _cpu_name()
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info


def _cpu_name() -> str:
    """The CPU model name and its count of logical CPUs."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            name = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), None)
    except OSError:
        name = None
    return f"{name or platform.processor() or platform.machine()} ({os.cpu_count()} logical CPUs)"


def _agf_cases(settings: BenchmarkSettings) -> list:
    """The AGF cases of the preset's stride-4 fusion (batch 1), the naive ones over the memory limit skipped."""
    config = get_config(settings.preset)
    channels, heads = config.feature_channels[0], config.agf_num_heads[0]
    element_size = 2 if settings.dtype == "bf16" else 4
    cases = []
    for implementation in AGF_IMPLEMENTATIONS:
        for pass_name in settings.agf_passes:
            for size in settings.agf_sizes:
                case = dict(
                    kind="agf",
                    implementation=implementation,
                    size=size,
                    stride=AGF_STRIDE,
                    channels=channels,
                    heads=heads,
                    batch=1,
                    device=settings.device,
                    dtype=settings.dtype,
                )
                case["pass"] = pass_name
                estimate = naive_attention_estimate_bytes((size // AGF_STRIDE) ** 2, 1, heads, pass_name, element_size)
                if implementation == "naive" and estimate > settings.agf_max_naive_gib * 2**30:
                    case["skipped"] = f"naive estimate {estimate / 2**30:.1f} GiB > {settings.agf_max_naive_gib} GiB"
                cases.append(case)
    return cases


def _data_pipeline(settings: BenchmarkSettings) -> dict:
    """``scripts/benchmark_data.py`` run as it is, in a subprocess, with crops of the benchmark's input size."""
    if not DATA_SCRIPT.is_file():
        return {"skipped": "scripts/benchmark_data.py is part of a source checkout and was not found"}
    height, width = settings.data_image_size
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "data.json"
        command = [
            sys.executable,
            str(DATA_SCRIPT),
            "--pairs",
            str(settings.data_pairs),
            "--height",
            str(height),
            "--width",
            str(width),
            "--crop",
            str(settings.size),
            "--workers",
            str(settings.data_workers),
            "--batch-size",
            str(settings.batch),
            "--epochs",
            "1",
            "--out",
            str(out),
        ]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=settings.timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {settings.timeout:.0f} s"}
        if result.returncode != 0 or not out.is_file():
            tail = (result.stderr.strip().splitlines() or ["no error output"])[-1]
            return {"error": f"scripts/benchmark_data.py failed (exit {result.returncode}): {tail}"}
        data = json.loads(out.read_text())
        data.get("settings", {}).pop("out", None)  # a temporary path, gone after this run
        return data


def run_benchmark(settings: BenchmarkSettings, log: Callable[[str], None] = print) -> dict:
    """Every section of one run (see the package docstring); returns the report that ``write_report`` saves."""
    settings = settings.resolved()
    report = {"settings": asdict(settings), "machine": _machine_info(settings), "models": [], "agf_memory": []}
    for variant in settings.variants:
        row = {"variant": variant, "config_overrides": VARIANTS[variant]}
        for phase in settings.phases:
            case = {"kind": "model", "settings": asdict(settings), "variant": variant, "phase": phase}
            row[phase] = _run_isolated_or_here(case, settings)
            log(f"{variant} {phase}: {_summary(row[phase], phase)}")
        report["models"].append(row)
    for case in _agf_cases(settings):
        measured = case if "skipped" in case else {**case, **_run_isolated_or_here(case, settings)}
        report["agf_memory"].append(measured)
        log(f"AGF {case['implementation']} {case['pass']} {case['size']}: {_agf_summary(measured)}")
    if settings.data_pipeline:
        report["data_pipeline"] = _data_pipeline(settings)
        log(f"data pipeline: {_data_summary(report['data_pipeline'])}")
    report["machine"]["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return report


def _summary(result: dict, phase: str) -> str:
    """One log line of a model phase: milliseconds and utilisation (tensor memory for "memory"), or the error."""
    if "error" in result:
        return result["error"]
    if phase == "memory":
        return f"tensor memory {result['tensor_memory']['total_peak'] / 2**30:.2f} GiB"
    seconds = result["latency_s"] if phase == "inference" else result["step_s"]
    return f"{seconds * 1e3:.1f} ms, utilisation {result['utilisation']:.2f}"


def _agf_summary(row: dict) -> str:
    """One log line of an AGF case: MiB of peak increase, or why it was skipped or failed."""
    for key in ("skipped", "error"):
        if key in row:
            return f"{key}: {row[key]}"
    return f"{row['peak_increase_bytes'] / 2**20:.1f} MiB"


def _data_summary(data: dict) -> str:
    """One log line of the data pipeline: DataLoader pairs/s per task, or why it was skipped or failed."""
    for key in ("skipped", "error"):
        if key in data:
            return f"{key}: {data[key]}"
    return ", ".join(f"{task} {loader_rate(data[task]):.1f} pairs/s" for task in TASKS if task in data)
