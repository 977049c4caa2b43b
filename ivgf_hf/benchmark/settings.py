"""What a benchmark run measures: :class:`BenchmarkSettings`, the model variants, tasks, dtypes and constants."""

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import torch

from ..presets import list_presets

# Config overrides of each model variant: IVGF, the paper's baseline (encoders fused by summation, no FEM / TEM),
# and one encoder alone (section IV-F).
VARIANTS = {
    "ivgf": {},
    "sum_fusion": {"use_fem": False, "use_tem": False, "use_agf": False},
    "visible": {"modalities": "visible"},
    "infrared": {"modalities": "infrared"},
}
TASKS = ("segmentation", "detection")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# "memory": one training step counted op by op (tensor memory by part and FLOPs), no timing: a GPU's needs on any
# device. The "training" phase measures the same besides its timing.
PHASES = ("inference", "training", "memory")
# Forward-time groups; "agf" holds the fusion modules, which are summations in the sum_fusion variant.
MODULE_GROUPS = ("encoders", "fem", "tem", "agf", "head")
NUM_LABELS = {"segmentation": 9, "detection": 6}  # MFNet and M3FD classes
AGF_IMPLEMENTATIONS = ("sdpa", "naive")
AGF_PASSES = ("forward", "forward+backward")
AGF_STRIDE = 4  # the AGF section measures the stride-4 fusion, the one with the most tokens
SCHEDULE_ITERATIONS = 240_000  # the paper's training schedule
DATA_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "benchmark_data.py"


@dataclass
class BenchmarkSettings:
    """What one benchmark run measures. Sizes in pixels, times in seconds, memory in GiB where named so.

    ``device="auto"`` picks CUDA when available; ``threads=None`` keeps torch's default thread count;
    ``matmul_size=None`` uses 2048 on the CPU and 8192 on CUDA. ``isolate`` runs every model phase and AGF case in
    a fresh subprocess (honest peak memory); without it everything runs in this process.
    """

    preset: str = "base"
    task: str = "segmentation"
    size: int = 512
    batch: int = 2
    dtype: str = "fp32"
    device: str = "auto"
    compile: bool = False
    channels_last: bool = False
    gradient_checkpointing: bool = False
    variants: tuple = tuple(VARIANTS)
    warmup: int = 2
    iterations: int = 10
    threads: Optional[int] = None
    phases: tuple = ("inference", "training")
    isolate: bool = True
    matmul_size: Optional[int] = None
    agf_sizes: tuple = (256, 512, 768)
    agf_passes: tuple = ("forward+backward",)
    agf_max_naive_gib: float = 8.0
    data_pipeline: bool = True
    data_pairs: int = 16
    data_image_size: tuple = (480, 640)
    data_workers: int = field(default_factory=lambda: min(2, os.cpu_count() or 1))
    timeout: float = 3600.0

    def resolved(self) -> "BenchmarkSettings":
        """A validated copy with ``device``, ``threads`` and ``matmul_size`` made concrete; ValueError if invalid."""
        problems = []
        if self.preset not in list_presets():
            problems.append(f"preset {self.preset!r} is not one of {list_presets()}")
        if self.task not in TASKS:
            problems.append(f"task {self.task!r} is not one of {TASKS}")
        if self.dtype not in DTYPES:
            problems.append(f"dtype {self.dtype!r} is not one of {tuple(DTYPES)}")
        if self.device not in ("auto", "cpu", "cuda"):
            problems.append(f"device {self.device!r} is not one of auto, cpu, cuda")
        if self.device == "cuda" and not torch.cuda.is_available():
            problems.append("device 'cuda' was requested but CUDA is not available")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            problems.append(f"variants {unknown} are not among {tuple(VARIANTS)}")
        if not (self.variants or self.agf_sizes or self.data_pipeline):
            problems.append("nothing to measure: no variants, no agf_sizes and no data pipeline")
        if self.size < 48 or self.size % 16:
            problems.append(f"size {self.size} must be a multiple of 16 and at least 48")
        if self.threads is not None and self.threads < 1:
            problems.append(f"threads must be at least 1, got {self.threads}")
        for name in ("batch", "iterations", "data_pairs"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup < (1 if self.compile else 0):
            problems.append(f"warmup must be at least {1 if self.compile else 0}, got {self.warmup}")
        bad_sizes = [s for s in self.agf_sizes if s < AGF_STRIDE or s % AGF_STRIDE]
        if bad_sizes:
            problems.append(f"agf_sizes {bad_sizes} are not positive multiples of {AGF_STRIDE}")
        if not self.phases or any(phase not in PHASES for phase in self.phases):
            problems.append(f"phases {list(self.phases)} must be a non-empty subset of {PHASES}")
        bad_passes = [p for p in self.agf_passes if p not in AGF_PASSES]
        if bad_passes:
            problems.append(f"agf_passes {bad_passes} are not among {AGF_PASSES}")
        if problems:
            raise ValueError("invalid benchmark settings: " + "; ".join(problems))
        device = self.device if self.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        return replace(
            self,
            device=device,
            threads=self.threads or torch.get_num_threads(),
            matmul_size=self.matmul_size or (8192 if device == "cuda" else 2048),
            variants=tuple(self.variants),
            phases=tuple(phase for phase in PHASES if phase in self.phases),
            agf_sizes=tuple(self.agf_sizes),
            agf_passes=tuple(self.agf_passes),
            data_image_size=tuple(self.data_image_size),
        )
