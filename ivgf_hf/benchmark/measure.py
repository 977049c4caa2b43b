"""Clocks, timed calls, peak memory and the dense matmul throughput of a device."""

import statistics
import sys
import time
from contextlib import nullcontext
from typing import Callable, Optional

import torch

from .settings import DTYPES


def autocast(device: str, dtype: str):
    """Autocast to ``dtype`` (a :data:`DTYPES` name) on ``device`` ("cpu" / "cuda"); nothing for "fp32"."""
    if dtype == "fp32":
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=DTYPES[dtype])


def synchronize(device: torch.device) -> None:
    """Wait for the queued work of ``device`` (CUDA); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(device: torch.device) -> float:
    """Seconds, after the device has finished its queued work."""
    synchronize(device)
    return time.perf_counter()


def time_calls(fn: Callable[[], object], warmup: int, iterations: int, device: torch.device) -> dict:
    """Run ``fn`` ``warmup`` times, then time ``iterations`` calls. Seconds: first call, median and fastest call,
    all timed calls, and the median and least CPU time of this process per call (all its threads; a
    load-independent measure on the CPU)."""
    first = None
    for index in range(warmup):
        start = clock(device)
        fn()
        if index == 0:
            first = clock(device) - start
    times, cpu_times = [], []
    for _ in range(iterations):
        start, cpu_start = clock(device), time.process_time()
        fn()
        times.append(clock(device) - start)
        cpu_times.append(time.process_time() - cpu_start)
    return {
        "first_call_s": first,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "times_s": times,
        "median_cpu_s": statistics.median(cpu_times),
        "min_cpu_s": min(cpu_times),
    }


def _proc_status_kib(key: str) -> Optional[int]:
    """A KiB field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), or None where there is no such file."""
    try:
        with open("/proc/self/status") as status:
            return next((int(line.split()[1]) for line in status if line.startswith(key + ":")), None)
    except OSError:
        return None


def reset_peak_memory(device: torch.device) -> dict:
    """Start a peak-memory window; returns the bytes in use now and how the peak will be read."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return {"before_bytes": torch.cuda.memory_allocated(device), "method": "cuda max_memory_allocated"}
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # Linux: reset the peak-RSS mark (VmHWM) to the current RSS
        method = "peak RSS of the process (mark reset)"
    except OSError:
        method = "peak RSS of the process since its start"
    current = _proc_status_kib("VmRSS")
    return {"before_bytes": current * 1024 if current is not None else None, "method": method}


def peak_memory_bytes(device: torch.device) -> int:
    """Peak since :func:`reset_peak_memory`: CUDA max allocated, or the CPU process's peak resident set size."""
    if device.type == "cuda":
        synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    peak = _proc_status_kib("VmHWM")
    if peak is None:  # not Linux: ru_maxrss is KiB on Linux, bytes on macOS
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024
    return peak * 1024


def measure_matmul_throughput(device: torch.device, dtype: torch.dtype, size: int, repeats: int = 10) -> dict:
    """Dense (size x size) @ (size x size) matmul FLOP/s in ``dtype``, from the fastest of ``repeats`` products: the
    device's practical compute ceiling (the fastest call, because a shared machine only ever slows calls down)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    timing = time_calls(lambda: a @ b, warmup=2, iterations=repeats, device=device)
    flops = 2 * size**3
    return {
        "size": size,
        "dtype": str(dtype).replace("torch.", ""),
        "repeats": repeats,
        "flop_per_s": flops / timing["min_s"],
        "flop_per_cpu_s": flops / timing["min_cpu_s"] if timing["min_cpu_s"] > 0 else None,
    }
