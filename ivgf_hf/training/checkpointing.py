"""Atomic training checkpoints: ``accelerator.save_state`` into a staging folder that is renamed into place.

A checkpoint folder ``checkpoints/step-<8 digits>`` holds what ``save_state`` writes (``model.safetensors``,
``optimizer.bin``, ``scheduler.bin``, ``random_states_<rank>.pkl``) plus ``training_state.json``
(:class:`TrainingProgress`: step, data position, best metric). It is written as ``checkpoints/.staging-step-...``,
its files are flushed to disk, and only then renamed: a folder named ``step-*`` is always complete, whatever
moment the process is killed at. Leftover staging folders are removed on the next start. Before writing, the free
space is checked against the size of the newest checkpoint (or an estimate); a failed write removes its staging
folder, and a full disk is reported as ``OSError(ENOSPC)`` naming the folder.
"""

import errno
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

__all__ = ["TrainingProgress", "CheckpointManager", "STATE_FILE"]

STATE_FILE = "training_state.json"
_NAME = re.compile(r"^step-(\d{8,})$")
_STAGING_PREFIX = ".staging-"


@dataclass
class TrainingProgress:
    """Where a run stands. ``micro_batches`` counts global micro-batches consumed (the data position)."""

    global_step: int = 0
    micro_batches: int = 0
    best_metric: Optional[float] = None
    best_step: Optional[int] = None
    num_processes: int = 1
    num_train_samples: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_file(cls, path: Path) -> "TrainingProgress":
        try:
            values = json.loads(Path(path).read_text())
            return cls(**values)
        except (OSError, ValueError, TypeError) as error:
            raise ValueError(f"cannot read the training state {path}: {error}") from None


def _fsync_tree(folder: Path) -> None:
    """Flush every file of ``folder`` and the folder entry itself to disk."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def _free_bytes(folder: Path) -> int:
    """Free space on the file system that holds ``folder`` (or its nearest existing parent)."""
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    return shutil.disk_usage(existing).free


class CheckpointManager:
    """Saves, finds, loads and prunes the checkpoints under ``folder`` (keeping the last ``keep_last``).

    ``expected_bytes`` estimates the size of the first checkpoint (later ones are assumed as large as the newest).
    """

    def __init__(self, folder, keep_last: int, expected_bytes: int = 0):
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.folder = Path(folder)
        self.keep_last = keep_last
        self.expected_bytes = expected_bytes

    @staticmethod
    def name(step: int) -> str:
        return f"step-{step:08d}"

    def checkpoints(self) -> list:
        """``[(step, path)]`` of the complete checkpoints, oldest first."""
        if not self.folder.is_dir():
            return []
        found = []
        for path in self.folder.iterdir():
            match = _NAME.match(path.name)
            if match and path.is_dir() and (path / STATE_FILE).is_file():
                found.append((int(match.group(1)), path))
        return sorted(found)

    def latest(self) -> Optional[Path]:
        """The newest complete checkpoint, or None."""
        found = self.checkpoints()
        return found[-1][1] if found else None

    def remove_staging(self) -> None:
        """Delete staging folders left by a run that was killed while saving (main process only)."""
        if self.folder.is_dir():
            for path in self.folder.iterdir():
                if path.name.startswith(_STAGING_PREFIX):
                    shutil.rmtree(path, ignore_errors=True)

    def _disk_full(self, needed: int, step: int) -> OSError:
        free = _free_bytes(self.folder)
        return OSError(
            errno.ENOSPC,
            f"not enough disk space for the checkpoint of step {step} in {self.folder}: about {needed / 2**20:.0f} "
            f"MiB needed, {free / 2**20:.0f} MiB free; free some space (or lower keep_last) and rerun with --resume",
        )

    def save(self, accelerator, progress: TrainingProgress) -> Path:
        """Write the checkpoint of ``progress.global_step`` atomically; every process must call this.

        Raises ``OSError(ENOSPC)`` before writing when the disk lacks the room, and after a write that failed on a
        full disk; the staging folder of a failed write is removed.
        """
        name = self.name(progress.global_step)
        staging, final = self.folder / f"{_STAGING_PREFIX}{name}", self.folder / name
        latest = self.latest()
        needed = max(_folder_bytes(latest) if latest is not None else 0, self.expected_bytes)
        if _free_bytes(self.folder) < needed:
            raise self._disk_full(needed, progress.global_step)
        try:
            self._write(accelerator, progress, staging)
        except BaseException as error:
            # torch reports a full disk as RuntimeError("... unexpected pos ..."): judge by the space left
            remaining = needed - (_folder_bytes(staging) if staging.is_dir() else 0)
            full = isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)
            full = full or _free_bytes(self.folder) < max(remaining, 0) + 2**20
            if accelerator.is_main_process:
                shutil.rmtree(staging, ignore_errors=True)
            if full and isinstance(error, Exception):
                raise self._disk_full(needed, progress.global_step) from error
            raise
        if accelerator.is_main_process:
            if final.exists():  # the same step saved by an earlier attempt: replace it
                retired = self.folder / f"{_STAGING_PREFIX}retired-{name}"
                final.rename(retired)
                staging.rename(final)
                shutil.rmtree(retired)
            else:
                staging.rename(final)
            _fsync_dir(self.folder)
            self.prune(protect=progress.best_step)
        accelerator.wait_for_everyone()
        return final

    @staticmethod
    def _write(accelerator, progress: TrainingProgress, staging: Path) -> None:
        """Fill ``staging`` with the states and the progress file, flushed to disk."""
        if accelerator.is_main_process:
            if staging.exists():
                shutil.rmtree(staging)
            staging.mkdir(parents=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(staging))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            (staging / STATE_FILE).write_text(progress.to_json())
            _fsync_tree(staging)

    def prune(self, protect: Optional[int] = None) -> None:
        """Delete all but the last ``keep_last`` checkpoints, and never the one of step ``protect``."""
        found = self.checkpoints()
        for step, path in found[: max(len(found) - self.keep_last, 0)]:
            if step != protect:
                shutil.rmtree(path)

    @staticmethod
    def load(accelerator, path) -> TrainingProgress:
        """Restore model, optimizer, scheduler and RNG states from ``path``; returns its :class:`TrainingProgress`."""
        path = Path(path)
        progress = TrainingProgress.from_file(path / STATE_FILE)
        accelerator.load_state(str(path))
        return progress
