"""CPU thread policy: processes x intra-op threads never exceed the cores this process may use.

The cores available are the CPU affinity mask (``os.sched_getaffinity``) capped by the cgroup v2 CPU quota
(``/sys/fs/cgroup/cpu.max``, ``"<quota> <period>"``, rounded up; ``"max"`` means no quota). The intra-op thread
count of one process is, first found wins:

1. an explicit request (``ivgf ... --threads N``);
2. the environment variable ``IVGF_NUM_THREADS``;
3. ``OMP_NUM_THREADS``, when set (the user already chose);
4. the available cores divided by the processes sharing them (``LOCAL_WORLD_SIZE``, set by ``torchrun`` and
   ``accelerate launch``; ``ivgf ablate --jobs`` passes its job count).

DataLoader worker processes need nothing more: torch's worker loop sets one intra-op thread in each (checked by
tests/test_threads.py), so they do not each start a full set.
Imports only the standard library at module level: ``ivgf_hf.commands`` uses it.
"""

import math
import os
from pathlib import Path
from typing import Optional

__all__ = [
    "ENV_VAR",
    "available_cpus",
    "cgroup_cpu_limit",
    "resolve_num_threads",
    "configure_threads",
    "add_threads_argument",
]

ENV_VAR = "IVGF_NUM_THREADS"
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def cgroup_cpu_limit(path: Path = CGROUP_CPU_MAX) -> Optional[int]:
    """Cores allowed by a cgroup v2 ``cpu.max`` file (quota / period, rounded up, at least 1); None without a quota."""
    try:
        fields = path.read_text().split()
    except OSError:
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    if quota <= 0 or period <= 0:
        return None
    return max(1, math.ceil(quota / period))


def available_cpus(cgroup_file: Path = CGROUP_CPU_MAX) -> int:
    """Cores this process may use: its affinity mask (or ``os.cpu_count()``) capped by the cgroup quota."""
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit(cgroup_file)
    return max(1, min(cores, limit) if limit is not None else cores)


def _positive_int(text: str, source: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{source} must be a positive integer, got {text!r}")
    return value


def resolve_num_threads(requested: Optional[int] = None, processes: Optional[int] = None) -> int:
    """Intra-op threads for this process (see the module docstring for the order of the sources).

    Args:
        requested: an explicit thread count (e.g. ``--threads``); wins over everything.
        processes: processes sharing the cores (default: ``LOCAL_WORLD_SIZE`` or 1).
    """
    if requested is not None:
        return _positive_int(str(requested), "--threads")
    for name in (ENV_VAR, "OMP_NUM_THREADS"):
        if os.environ.get(name, "").strip():
            return _positive_int(os.environ[name].strip(), name)
    if processes is None:
        processes = _positive_int(os.environ.get("LOCAL_WORLD_SIZE", "1"), "LOCAL_WORLD_SIZE")
    return max(1, available_cpus() // max(1, processes))


def configure_threads(requested: Optional[int] = None, processes: Optional[int] = None) -> int:
    """Set torch's intra-op threads by :func:`resolve_num_threads`; returns the count set."""
    import torch

    threads = resolve_num_threads(requested, processes)
    torch.set_num_threads(threads)
    return threads


def add_threads_argument(parser) -> None:
    """Add ``--threads N`` to an argparse parser of an ``ivgf`` command (``ivgf_hf.cli`` applies it)."""
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help=f"torch intra-op threads per process (default: ${ENV_VAR}, else $OMP_NUM_THREADS, else the available "
        "cores (affinity and cgroup quota) divided by the processes on this machine)",
    )
