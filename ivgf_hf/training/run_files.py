"""The run folder: which files a run owns, the safety checks before writing, and the JSON-lines metrics log.

Layout of ``output_dir``::

    recipe.json            the resolved recipe (reusable with --config)
    run_info.json          versions, processes, initialisation report, start time of the latest start
    metrics.jsonl          one JSON object per logged step and per evaluation
    checkpoints/step-*/    accelerate states (see ivgf_hf.training.checkpointing)
    best_model/            Hub folder of the best evaluation
    final_model/           Hub folder of the last step
    logs/                  tracker files (TensorBoard) when enabled
    m3fd_seed*_*.txt       the M3FD split lists of a seeded split
"""

import json
import math
import platform
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

__all__ = [
    "RUN_ENTRIES",
    "check_output_dir",
    "clear_run",
    "holds_run",
    "MetricsLog",
    "report_metrics",
    "run_info",
    "tracker_config",
]

RUN_ENTRIES = ("recipe.json", "run_info.json", "metrics.jsonl", "checkpoints", "best_model", "final_model", "logs")


def _existing_entries(output_dir: Path) -> list:
    return [name for name in RUN_ENTRIES if (output_dir / name).exists()]


def holds_run(output_dir: Path) -> bool:
    """Whether ``output_dir`` holds any entry a run writes."""
    return output_dir.is_dir() and bool(_existing_entries(output_dir))


def check_output_dir(output_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start a new run over an existing one unless ``resume`` or ``overwrite`` says what to do."""
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other")
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"output_dir {output_dir} exists and is not a folder")
    existing = _existing_entries(output_dir) if output_dir.is_dir() else []
    if existing and not (resume or overwrite):
        raise FileExistsError(
            f"{output_dir} already holds a run ({', '.join(existing)}); pass --resume to continue it or "
            "--overwrite to delete it and start over"
        )


def clear_run(output_dir: Path) -> None:
    """Delete the entries a run owns (and nothing else) from ``output_dir``."""
    for name in _existing_entries(output_dir):
        path = output_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in output_dir.glob("m3fd_seed*_*.txt"):
        path.unlink()


class MetricsLog:
    """Appends JSON objects (one per line) to ``path`` on the main process; others write nothing.

    ``truncate_after(step)`` drops the records of steps after ``step``: after a resume they would otherwise appear
    twice (once from the killed attempt, once from the resumed one).
    """

    def __init__(self, path: Path, enabled: bool):
        self.path = Path(path)
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        if not self.enabled or not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a line cut short by a kill
                continue
            if record.get("step", 0) <= step:
                kept.append(line)
        self.path.write_text("".join(f"{line}\n" for line in kept))

    def write(self, record: dict) -> None:
        if self.enabled:
            with open(self.path, "a") as handle:
                handle.write(json.dumps(record, allow_nan=True) + "\n")

    def read(self, kind: Optional[str] = None) -> list:
        """Records in order (all, or those whose ``"kind"`` is ``kind``)."""
        if not self.path.exists():
            return []
        records = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        return [r for r in records if kind is None or r.get("kind") == kind]


def _json_value(value):
    """Metric values for JSON: NaN -> None, nested dicts kept."""
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def report_metrics(groups: dict) -> dict:
    """``{group: metrics}`` for the log: confusion matrices left out (size), NaN written as null."""
    return _json_value({g: {k: v for k, v in m.items() if k != "confusion_matrix"} for g, m in groups.items()})


def tracker_config(recipe) -> dict:
    """The recipe flattened to tracker-friendly scalars (TensorBoard's hparams take numbers and strings only)."""
    config = {}
    for key, value in recipe.to_dict().items():
        config[key] = value if isinstance(value, (int, float, str, bool)) else json.dumps(value)
    return config


def run_info(accelerator, recipe, init_report: str, resumed_from: int) -> dict:
    """What ``run_info.json`` records about the latest start of a run."""
    import accelerate
    import torch
    import transformers

    from .. import __version__

    return {
        "ivgf_hf": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "python": platform.python_version(),
        "num_processes": accelerator.num_processes,
        "distributed_type": str(accelerator.distributed_type),
        "device": str(accelerator.device),
        "mixed_precision": recipe.mixed_precision,
        "effective_batch_size": recipe.batch_size * accelerator.num_processes * recipe.gradient_accumulation_steps,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "resumed_from_step": resumed_from,
        "initialisation": init_report,
    }
