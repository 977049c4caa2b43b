"""The Accelerate training loop behind ``ivgf train``: one code path for CPU, one GPU, several GPUs or nodes.

Launch it as a plain process, or under ``accelerate launch --multi_gpu`` / ``torchrun`` for several processes.
Every optimizer step ``s`` consumes ``gradient_accumulation_steps`` micro-batches of ``batch_size`` samples per
process; the learning-rate schedule is a pure function of ``s`` (the prepared scheduler is created with
``step_scheduler_with_optimizer=False`` and stepped once per optimizer step, so it does not advance once per
process). Data order and augmentation depend only on seeds (see :mod:`ivgf_hf.training.data`), RNG, model,
optimizer and scheduler states are checkpointed with ``accelerator.save_state``: a resumed run follows the
uninterrupted one step for step.
"""

import copy
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import torch

from ..evaluation.runner import evaluate_model
from .checkpointing import CheckpointManager, TrainingProgress
from .class_weights import class_weights_for
from .data import (
    EpochBatchSampler,
    SeededTransformDataset,
    build_train_transform,
    check_splits,
    dataset_class_names,
    load_recipe_data,
    train_loader,
)
from .model_setup import build_model, enable_gradient_checkpointing, export_model
from .optim import build_optimizer, build_scheduler
from .recipes import CADENCE_FIELDS, RecipeError, TrainingRecipe, get_recipe
from .run_files import (
    MetricsLog,
    check_output_dir,
    clear_run,
    holds_run,
    report_metrics,
    run_info,
    tracker_config,
)

__all__ = ["train", "TrainingResult", "HEADLINE_METRICS"]

logger = logging.getLogger(__name__)

HEADLINE_METRICS = {
    "segmentation": ("mIoU", "pixel_accuracy", "mean_accuracy"),
    "detection": ("mAP", "mAP50", "mAP75"),
}


@dataclass
class TrainingResult:
    """What :func:`train` produced. Metrics are fractions in [0, 1]; ``model`` is the trained model (unwrapped, on
    the training device, in train mode) of this process."""

    output_dir: Path
    global_step: int
    final_model: Path
    best_model: Optional[Path]
    best_metric: Optional[float]
    best_step: Optional[int]
    last_eval: Optional[dict]
    model: Any = field(default=None, repr=False)


def _make_accelerator(recipe: TrainingRecipe, output_dir: Path):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration

    # Every parameter takes part in the loss, except Mask R-CNN's mask branch when trained on boxes only.
    unused = recipe.task == "detection" and bool(recipe.model_overrides.get("use_mask_head", False))
    launched = _launched_world_size()
    accelerator = Accelerator(
        # without cpu=True, Accelerate treats torchrun's processes on a machine without CUDA as independent runs
        cpu=launched > 1 and not torch.cuda.is_available(),
        mixed_precision=recipe.mixed_precision,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps,
        step_scheduler_with_optimizer=False,
        log_with=list(recipe.report_to) or None,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=unused)],
    )
    if accelerator.num_processes != launched:
        raise RuntimeError(
            f"the launcher started {launched} processes but Accelerate sees {accelerator.num_processes} "
            f"({accelerator.distributed_type}); every process would train on its own"
        )
    return accelerator


def _launched_world_size() -> int:
    """Processes started by the launcher (torchrun / accelerate launch set WORLD_SIZE; MPI its own variables)."""
    for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        if os.environ.get(name):
            return int(os.environ[name])
    return 1


def _check_resumable(saved: TrainingRecipe, requested: TrainingRecipe) -> None:
    """A resumed run must follow the same trajectory: only checkpoint / logging cadence may change."""
    old, new = saved.to_dict(), requested.to_dict()
    changed = sorted(k for k in old if k not in CADENCE_FIELDS and k != "name" and old[k] != new[k])
    if changed:
        details = "; ".join(f"{k}: {old[k]!r} -> {new[k]!r}" for k in changed)
        raise RecipeError(f"cannot resume with a different recipe ({details}); start a new run instead")


def _eval_processor(processor, eval_size: Optional[int]):
    """``processor``, or a copy that resizes the longer image side to ``eval_size`` (metrics stay at full size)."""
    if eval_size is None:
        return processor
    resized = copy.deepcopy(processor)
    resized.do_resize = True
    resized.size = {"shortest_edge": eval_size, "longest_edge": eval_size}
    return resized


def _check_progress(progress: TrainingProgress, accelerator, num_samples: int, path: Path) -> None:
    if progress.num_processes != accelerator.num_processes:
        raise RuntimeError(
            f"{path} was written by {progress.num_processes} process(es) but this run has "
            f"{accelerator.num_processes}: the data position and RNG states only continue with the same count"
        )
    if progress.num_train_samples != num_samples:
        raise RuntimeError(
            f"{path} was trained on {progress.num_train_samples} samples but the training set now has {num_samples}"
        )


class _LossWindow:
    """Sum of micro-batch losses since the last log, kept on the device (no host sync per step)."""

    def __init__(self):
        self.total, self.count, self.started = None, 0, time.perf_counter()

    def add(self, loss: torch.Tensor) -> None:
        loss = loss.detach().float()
        self.total = loss if self.total is None else self.total + loss
        self.count += 1

    def mean_over_processes(self, accelerator) -> float:
        mean = self.total / self.count
        return float(accelerator.reduce(mean, reduction="mean"))

    def reset(self) -> None:
        self.total, self.count, self.started = None, 0, time.perf_counter()


def train(
    recipe: Union[TrainingRecipe, str],
    output_dir: Union[str, Path],
    *,
    resume: bool = False,
    overwrite: bool = False,
    data=None,
) -> TrainingResult:
    """Train the recipe's model and write the run folder (see :mod:`ivgf_hf.training.run_files`).

    Args:
        recipe: a :class:`TrainingRecipe` or the name of one in :data:`~ivgf_hf.training.recipes.RECIPES`.
        output_dir: the run folder.
        resume: continue from the newest checkpoint in ``output_dir`` (start from step 0 if there is none). The
            recipe must match the saved ``recipe.json`` except for cadence fields (checkpoint / log / eval
            intervals, workers, trackers).
        overwrite: delete an existing run in ``output_dir`` first (only the files a run writes).
        data: an already loaded ``DatasetDict`` with the loaders' columns, used instead of
            ``recipe.dataset`` / ``recipe.data_root``.

    Returns:
        A :class:`TrainingResult`; the weights are in ``final_model/`` (and ``best_model/`` with evaluation).
    """
    from accelerate.state import AcceleratorState, GradientState

    recipe = get_recipe(recipe) if isinstance(recipe, str) else recipe
    output_dir = Path(output_dir).expanduser()
    # Checked by every process before the launcher's processes meet in Accelerator(), i.e. before anything is written.
    check_output_dir(output_dir, resume, overwrite)
    recipe_path = output_dir / "recipe.json"
    if resume and recipe_path.exists():
        _check_resumable(TrainingRecipe(**json.loads(recipe_path.read_text())), recipe)
    if recipe.metric_for_best not in HEADLINE_METRICS[recipe.task]:
        raise RecipeError(
            f"best_metric {recipe.metric_for_best!r} is not a {recipe.task} metric; use one of "
            f"{HEADLINE_METRICS[recipe.task]}"
        )
    # A start that fails before its first optimizer step removes what it wrote, so the corrected command just works.
    fresh_start, created = not (resume and holds_run(output_dir)), not output_dir.exists()
    accelerator = _make_accelerator(recipe, output_dir)
    run = None
    try:
        _prepare_folder(accelerator, output_dir, overwrite)
        with accelerator.main_process_first():
            if data is None:
                data = load_recipe_data(recipe, output_dir, reuse_written_splits=not accelerator.is_main_process)
        check_splits(data, recipe)
        _check_batches(data[recipe.train_split], recipe, accelerator)
        if accelerator.is_main_process:  # written once the data is known to fit the recipe
            recipe.save(output_dir / "recipe.json")
        run = _TrainingRun(accelerator, recipe, output_dir, data, resume)
        return run.run()
    except BaseException:
        if fresh_start and accelerator.is_main_process and (run is None or run.progress.global_step == 0):
            _remove_failed_start(output_dir, created)
        raise
    finally:
        # Accelerate keeps its settings in process-wide singletons: clear them so that a later train() in the same
        # process (another recipe, other mixed precision) starts afresh. end_training() already closed the group.
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


def _check_batches(train_split, recipe: TrainingRecipe, accelerator) -> None:
    """RecipeError for a training split smaller than one global batch, or a batch the model cannot train on."""
    global_batch = recipe.batch_size * accelerator.num_processes
    if len(train_split) < global_batch:
        raise RecipeError(
            f"train_split {recipe.train_split!r} of {recipe.data_root or 'the data set'} has {len(train_split)} "
            f"sample(s), fewer than one global batch of {global_batch} ({recipe.batch_size} per process x "
            f"{accelerator.num_processes} process(es)); check its split list or lower --batch-size"
        )
    sync_batchnorm = recipe.sync_batchnorm and accelerator.num_processes > 1 and accelerator.device.type == "cuda"
    if recipe.task == "segmentation" and recipe.batch_size == 1 and not sync_batchnorm:
        raise RecipeError(
            "batch_size 1 cannot train segmentation: BatchNorm in the UperNet head needs 2 or more images per "
            "process and step; use --batch-size 2 or more (or several GPUs with sync_batchnorm)"
        )


def _remove_failed_start(output_dir: Path, created: bool) -> None:
    """Delete the run files of a start that failed before its first step (and the folder if it made it)."""
    clear_run(output_dir)
    if created and output_dir.is_dir() and not any(output_dir.iterdir()):
        output_dir.rmdir()


def _prepare_folder(accelerator, output_dir: Path, overwrite: bool) -> None:
    if accelerator.is_main_process:
        if overwrite:
            clear_run(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()


def _build(accelerator, recipe: TrainingRecipe, class_names: list, train_split) -> tuple:
    """Model, optimizer and scheduler prepared by Accelerate, the processor and the initialisation report."""
    from accelerate.utils import set_seed

    class_weights = class_weights_for(recipe.class_weighting, train_split, len(class_names))
    set_seed(recipe.seed)  # identical initial weights in every process
    model, processor, init_report = build_model(recipe, class_names, class_weights)
    if class_weights is not None:
        weights = ", ".join(f"{name} {weight:.2f}" for name, weight in zip(class_names, class_weights))
        init_report += f"\nloss class weights ({recipe.class_weighting}): {weights}"
    if recipe.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if recipe.sync_batchnorm and accelerator.num_processes > 1 and accelerator.device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # SyncBatchNorm has no CPU kernel
    optimizer = build_optimizer(model, recipe, device=accelerator.device)
    scheduler = build_scheduler(optimizer, recipe)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    return model, optimizer, scheduler, processor, init_report


class _TrainingRun:
    """The state of one training run between its setup and its final export."""

    def __init__(self, accelerator, recipe: TrainingRecipe, output_dir: Path, data, resume: bool):
        self.accelerator, self.recipe, self.output_dir, self.data = accelerator, recipe, output_dir, data
        self.is_main = accelerator.is_main_process
        self.class_names = dataset_class_names(data, recipe.task)
        self.model, self.optimizer, self.scheduler, self.processor, init_report = _build(
            accelerator, recipe, self.class_names, data[recipe.train_split]
        )
        self.unwrapped = accelerator.unwrap_model(self.model)
        self.eval_processor = _eval_processor(self.processor, recipe.eval_size)
        self.train_set = SeededTransformDataset(
            data[recipe.train_split],
            build_train_transform(recipe, self.processor, self.unwrapped.config.modalities),
            recipe.task,
            recipe.seed,
        )
        # weights and AdamW's two moments: the size of the first checkpoint, checked against the free disk space
        state_bytes = 3 * sum(p.numel() * p.element_size() for p in self.unwrapped.parameters())
        self.checkpoints = CheckpointManager(output_dir / "checkpoints", recipe.keep_last, expected_bytes=state_bytes)
        self.progress = self._restore(resume)
        self.metrics_log = MetricsLog(output_dir / "metrics.jsonl", self.is_main)
        self.metrics_log.truncate_after(self.progress.global_step)
        if self.is_main:
            info = run_info(accelerator, recipe, init_report, self.progress.global_step)
            (output_dir / "run_info.json").write_text(json.dumps(info, indent=2) + "\n")
        if recipe.report_to:
            accelerator.init_trackers("ivgf", config=tracker_config(recipe))
        self.sampler = EpochBatchSampler(
            len(self.train_set),
            recipe.batch_size,
            accelerator.num_processes,
            accelerator.process_index,
            recipe.seed,
            start=self.progress.micro_batches,
        )
        self.window = _LossWindow()
        self.grad_norm = None
        self.last_eval = None

    def _restore(self, resume: bool) -> TrainingProgress:
        """The newest checkpoint's progress (its states loaded) when resuming, else a fresh start."""
        from accelerate.utils import set_seed

        if self.is_main:
            self.checkpoints.remove_staging()
        self.accelerator.wait_for_everyone()
        set_seed(self.recipe.seed, device_specific=True)  # model-side randomness (drop path) differs per process
        latest = self.checkpoints.latest() if resume else None
        if latest is None:
            return TrainingProgress(num_processes=self.accelerator.num_processes, num_train_samples=len(self.train_set))
        progress = self.checkpoints.load(self.accelerator, latest)
        _check_progress(progress, self.accelerator, len(self.train_set), latest)
        if self.is_main:
            logger.info("resumed from %s (step %d)", latest, progress.global_step)
        return progress

    def optimizer_step(self, batches) -> None:
        """One optimizer step over ``gradient_accumulation_steps`` micro-batches."""
        from accelerate.utils import send_to_device

        accelerator, recipe = self.accelerator, self.recipe
        for _ in range(recipe.gradient_accumulation_steps):
            batch = send_to_device(next(batches), accelerator.device)
            with accelerator.accumulate(self.model):
                loss = self.model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    if recipe.max_grad_norm is not None:
                        self.grad_norm = accelerator.clip_grad_norm_(self.model.parameters(), recipe.max_grad_norm)
                    self.optimizer.step()
                    self.scheduler.step()  # once per optimizer step: created with step_scheduler_with_optimizer=False
                    self.optimizer.zero_grad(set_to_none=True)
            self.window.add(loss)
            self.progress.micro_batches += 1
        self.progress.global_step += 1

    def log(self, bar) -> None:
        step = self.progress.global_step
        mean_loss = self.window.mean_over_processes(self.accelerator)
        if not math.isfinite(mean_loss):
            raise FloatingPointError(
                f"the training loss is {mean_loss} at step {step}; lower learning_rate or set max_grad_norm"
            )
        samples = self.window.count * self.recipe.batch_size * self.accelerator.num_processes
        record = {
            "kind": "train",
            "step": step,
            "epoch": round(self.progress.micro_batches / self.sampler.batches_per_epoch, 4),
            "loss": mean_loss,
            "lr": max(self.scheduler.get_last_lr()),
            "samples_per_second": round(samples / (time.perf_counter() - self.window.started), 3),
        }
        if self.grad_norm is not None:
            record["grad_norm"] = float(self.grad_norm)
        self.metrics_log.write(record)
        self.accelerator.log({f"train/{k}": v for k, v in record.items() if k not in ("kind", "step")}, step=step)
        bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{record['lr']:.2e}")
        self.window.reset()

    def evaluate(self, bar) -> None:
        """Evaluate on ``eval_split``; a new best value of ``metric_for_best`` is exported to ``best_model/``."""
        recipe, step = self.recipe, self.progress.global_step
        result = evaluate_model(
            self.unwrapped,
            self.data[recipe.eval_split],
            task=recipe.task,
            processor=self.eval_processor,
            batch_size=recipe.eval_batch_size,
            max_samples=recipe.eval_max_samples,
            accelerator=self.accelerator,
        )
        self.last_eval = report_metrics(result["results"]["none"])
        self.metrics_log.write({"kind": "eval", "step": step, "split": recipe.eval_split, "metrics": self.last_eval})
        headline = {k: result["metrics"][k] for k in HEADLINE_METRICS[recipe.task]}
        self.accelerator.log({f"eval/{k}": v for k, v in headline.items()}, step=step)
        value = headline[recipe.metric_for_best]
        if not math.isnan(value) and (self.progress.best_metric is None or value > self.progress.best_metric):
            self.progress.best_metric, self.progress.best_step = value, step
            if self.is_main:
                export_model(self.unwrapped, self.processor, self.output_dir / "best_model", check=False)
            self.accelerator.wait_for_everyone()
        if self.is_main:
            bar.write(f"step {step}: {recipe.eval_split} {recipe.metric_for_best} {value:.4f}")

    def run(self) -> TrainingResult:
        from tqdm.auto import tqdm

        recipe, progress = self.recipe, self.progress
        batches = iter(train_loader(self.train_set, self.sampler, recipe.task, recipe.num_workers))
        bar = tqdm(
            total=recipe.max_steps,
            initial=progress.global_step,
            desc="train",
            unit="step",
            dynamic_ncols=True,
            disable=not self.accelerator.is_local_main_process,
        )
        self.model.train()
        while progress.global_step < recipe.max_steps:
            self.optimizer_step(batches)
            bar.update(1)
            step, last = progress.global_step, progress.global_step == recipe.max_steps
            if step % recipe.log_every == 0 or last:
                self.log(bar)
            if recipe.eval_split is not None and (step % recipe.eval_every == 0 or last):
                self.evaluate(bar)
            if step % recipe.save_every == 0 or last:
                self.checkpoints.save(self.accelerator, progress)
        bar.close()

        final_dir, best_dir = self.output_dir / "final_model", self.output_dir / "best_model"
        if self.is_main:
            export_model(self.unwrapped, self.processor, final_dir, check=recipe.export_check)
        self.accelerator.wait_for_everyone()
        self.accelerator.end_training()
        return TrainingResult(
            output_dir=self.output_dir,
            global_step=progress.global_step,
            final_model=final_dir,
            best_model=best_dir if best_dir.exists() else None,
            best_metric=progress.best_metric,
            best_step=progress.best_step,
            last_eval=self.last_eval,
            model=self.unwrapped,
        )
