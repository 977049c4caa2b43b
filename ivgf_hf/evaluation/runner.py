"""Evaluate an IVGF model on a data set: every missing-modality protocol and day / night group in one pass.

:func:`evaluate_model` reads raw pairs from a ``datasets.Dataset`` (the loaders' columns), applies each protocol
of the paper's Table VI at the raw image level, preprocesses with the image processor, runs whole-image or
sliding-window inference (with optional flip / multi-scale test-time augmentation) and accumulates
:class:`SegmentationMetric` or :class:`DetectionMetric` per protocol and group. Under ``torch.distributed`` (or
with an ``accelerate.Accelerator``) each process evaluates every ``world_size``-th sample, without duplicates,
and the metrics are summed across processes when they are computed.

:func:`results_to_markdown` and :func:`write_evaluation_report` turn the result into the files ``ivgf eval``
writes (JSON, markdown, PNG plots).
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..inference import (
    PROTOCOLS,
    SlidingWindow,
    apply_protocol,
    as_grey_array,
    as_rgb_array,
    prepare_inputs,
    segmentation_probabilities,
)

__all__ = [
    "TASKS",
    "GROUPS",
    "evaluate_model",
    "results_to_markdown",
    "write_evaluation_report",
    "report_paths",
]

TASKS = ("segmentation", "detection")
# Groups reported per protocol: every sample, then the samples of each lighting condition present in the data.
GROUPS = ("all", "day", "night")
_TARGET_COLUMN = {"segmentation": "label", "detection": "objects"}
_PROTOCOL_TITLES = {"none": "None", "visible_missing": "Visible", "infrared_missing": "Infrared"}
_HEADLINE = {"segmentation": ("mIoU", "mIoU"), "detection": ("mAP", "mAP50-95")}


def _column_names(dataset) -> list:
    names = getattr(dataset, "column_names", None)
    if names is not None:
        return list(names)
    if len(dataset) == 0:
        return []
    return list(dataset[0])


def _conditions(dataset, count: int, has_condition: bool) -> list:
    """The ``condition`` of the first ``count`` samples (no image decoding for a ``datasets.Dataset``)."""
    if not has_condition:
        return ["unknown"] * count
    if hasattr(dataset, "column_names"):
        return [str(value) for value in list(dataset["condition"])[:count]]
    return [str(dataset[index].get("condition", "unknown")) for index in range(count)]


def _check_arguments(task, protocols, batch_size, max_samples, sliding_window, tta_flip, tta_scales) -> tuple:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    protocols = [protocols] if isinstance(protocols, str) else list(protocols)
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if not protocols or unknown or len(set(protocols)) != len(protocols):
        raise ValueError(f"protocols must be distinct names among {PROTOCOLS}, got {protocols}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if max_samples is not None and (not isinstance(max_samples, int) or max_samples < 1):
        raise ValueError(f"max_samples must be None or a positive int, got {max_samples!r}")
    window = SlidingWindow.parse(sliding_window)
    scales = [float(s) for s in tta_scales]
    if task == "detection" and (window is not None or tta_flip or scales != [1.0]):
        raise ValueError("sliding_window, tta_flip and tta_scales apply to segmentation only")
    return protocols, window, scales


def _shard(accelerator) -> tuple:
    """(process index, number of processes): the accelerator's, else torch.distributed's, else (0, 1)."""
    if accelerator is not None:
        return accelerator.process_index, accelerator.num_processes
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _class_names(model) -> list:
    id2label = model.config.id2label
    return [str(id2label[index]) for index in range(model.config.num_labels)]


def _segmentation_target(label, index: int) -> torch.Tensor:
    array = np.asarray(label)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"sample {index}: label must be a single-channel class-id image, got shape {array.shape}")
    return torch.from_numpy(array.astype(np.int64))


def _detection_target(objects, index: int) -> dict:
    if not isinstance(objects, dict) or "bbox" not in objects or "category" not in objects:
        raise ValueError(f"sample {index}: objects must be a dict with 'bbox' (xyxy) and 'category', got {objects!r}")
    boxes = torch.as_tensor(np.asarray(objects["bbox"], dtype=np.float32).reshape(-1, 4))
    labels = torch.as_tensor(np.asarray(objects["category"], dtype=np.int64).reshape(-1))
    return {"boxes": boxes, "labels": labels}


class _Accumulator:
    """The metrics of one task: one per (protocol, group), routed per sample."""

    def __init__(self, task, protocols, groups, class_names, ignore_index, device):
        from .detection import DetectionMetric
        from .segmentation import SegmentationMetric

        self.task = task
        if task == "segmentation":
            metric_class, arguments = SegmentationMetric, (len(class_names), ignore_index, class_names)
        else:
            metric_class, arguments = DetectionMetric, (len(class_names), class_names)
        self.metrics = {p: {g: metric_class(*arguments).to(device) for g in groups} for p in protocols}

    def update(self, protocol: str, groups: Sequence[str], prediction, target) -> None:
        for group in groups:
            metric = self.metrics[protocol][group]
            if self.task == "segmentation":
                metric.update(prediction[None], target[None].to(prediction.device))
            else:
                device = prediction["boxes"].device
                metric.update([prediction], [{key: value.to(device) for key, value in target.items()}])

    def compute(self) -> dict:
        return {p: {g: metric.compute() for g, metric in groups.items()} for p, groups in self.metrics.items()}


def evaluate_model(
    model,
    dataset,
    *,
    task,
    processor=None,
    batch_size=2,
    protocols=("none",),
    max_samples=None,
    accelerator=None,
    sliding_window=None,
    tta_flip=False,
    tta_scales=(1.0,),
) -> dict:
    """Evaluate ``model`` on ``dataset`` under each missing-modality protocol, overall and per lighting condition.

    Args:
        model: an IVGF segmentation or detection model (``from_pretrained``); run in eval mode, restored after.
        dataset: a ``datasets.Dataset`` (or a sequence of dicts) with ``visible``, ``infrared`` and ``label``
            (segmentation, class ids, 255 ignored) or ``objects`` (detection, ``{"bbox": xyxy pixels,
            "category"}``) columns, optionally ``condition`` (``"day"`` / ``"night"``).
        task: ``"segmentation"`` or ``"detection"``.
        processor: an ``IVGFImageProcessor``; default ``IVGFImageProcessor()`` with the model's infrared channels.
        batch_size: pairs per forward pass.
        protocols: among ``"none"``, ``"visible_missing"``, ``"infrared_missing"`` (Table VI).
        max_samples: evaluate only the first ``max_samples`` samples.
        accelerator: an ``accelerate.Accelerator``: its device, mixed precision and process sharding are used.
        sliding_window: segmentation only; ``(crop, stride)`` in pixels (see :class:`SlidingWindow`), or None
            for whole-image inference.
        tta_flip, tta_scales: segmentation only; horizontal-flip and multi-scale test-time augmentation.

    Returns:
        ``{"task", "num_samples", "metrics": results[headline protocol]["all"], "results": {protocol: {group:
        metrics}}, "class_names", "settings"}``. The headline protocol is ``"none"`` when evaluated, else the
        first one. Groups are ``"all"`` plus ``"day"`` / ``"night"`` when the ``condition`` column holds them.
        Segmentation metrics are those of :class:`SegmentationMetric` (mIoU over all classes, per-class IoU,
        pixel accuracy, confusion matrix), detection metrics those of :class:`DetectionMetric`.
    """
    protocols, window, scales = _check_arguments(
        task, protocols, batch_size, max_samples, sliding_window, tta_flip, tta_scales
    )
    columns = _column_names(dataset)
    needed = ["visible", "infrared", _TARGET_COLUMN[task]]
    missing = [column for column in needed if column not in columns]
    if missing:
        raise ValueError(f"the dataset lacks the column(s) {missing} needed for {task}; it has {columns}")
    if processor is None:
        from ..modeling.image_processing_ivgf import IVGFImageProcessor

        processor = IVGFImageProcessor(ir_num_channels=model.config.num_channels_ir)

    count = len(dataset) if max_samples is None else min(max_samples, len(dataset))
    if count == 0:
        raise ValueError("the dataset is empty: nothing to evaluate")
    conditions = _conditions(dataset, count, "condition" in columns)
    present = set(conditions)
    groups = ["all"] + [group for group in GROUPS[1:] if group in present]
    rank, world = _shard(accelerator)
    indices = list(range(rank, count, world))

    if accelerator is not None:
        model = accelerator.unwrap_model(model)
        model.to(accelerator.device)
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    class_names = _class_names(model)
    ignore_index = int(getattr(processor, "ignore_index", 255))
    accumulator = _Accumulator(task, protocols, groups, class_names, ignore_index, device)
    autocast = accelerator.autocast if accelerator is not None else contextlib.nullcontext
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast():
            for start in _progress(range(0, len(indices), batch_size), rank, task):
                batch = indices[start : start + batch_size]
                _evaluate_batch(
                    model,
                    processor,
                    dataset,
                    batch,
                    conditions,
                    groups,
                    task,
                    protocols,
                    window,
                    tta_flip,
                    scales,
                    accumulator,
                    device,
                )
        results = accumulator.compute()
    finally:
        model.train(was_training)

    headline = "none" if "none" in protocols else protocols[0]
    settings = {
        "protocols": protocols,
        "headline_protocol": headline,
        "groups": groups,
        "group_sizes": {group: (count if group == "all" else conditions.count(group)) for group in groups},
        "batch_size": batch_size,
        "max_samples": max_samples,
        "sliding_window": window.as_dict() if window is not None else None,
        "tta_flip": bool(tta_flip),
        "tta_scales": scales,
        "ignore_index": ignore_index if task == "segmentation" else None,
        "num_processes": world,
        "processor": {key: getattr(processor, key, None) for key in ("do_resize", "size", "size_divisor")},
    }
    return {
        "task": task,
        "num_samples": count,
        "metrics": results[headline]["all"],
        "results": results,
        "class_names": class_names,
        "settings": settings,
    }


def _progress(iterable, rank: int, task: str):
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=f"evaluating ({task})", unit="batch", disable=rank != 0, leave=False)


def _evaluate_batch(
    model, processor, dataset, batch, conditions, groups, task, protocols, window, tta_flip, scales, accumulator, device
) -> None:
    rows = [dataset[index] for index in batch]
    visibles = [as_rgb_array(row["visible"], f"sample {index} visible") for row, index in zip(rows, batch)]
    infrareds = [as_grey_array(row["infrared"], f"sample {index} infrared") for row, index in zip(rows, batch)]
    sizes = [image.shape[:2] for image in visibles]
    for index, visible, infrared in zip(batch, visibles, infrareds):
        if visible.shape[:2] != infrared.shape[:2]:
            raise ValueError(f"sample {index}: visible {visible.shape[:2]} and infrared {infrared.shape[:2]} differ")
    if task == "segmentation":
        targets = [_segmentation_target(row["label"], index) for row, index in zip(rows, batch)]
        for index, target, size in zip(batch, targets, sizes):
            if tuple(target.shape) != tuple(size):
                raise ValueError(f"sample {index}: label {tuple(target.shape)} and image {tuple(size)} sizes differ")
    else:
        targets = [_detection_target(row["objects"], index) for row, index in zip(rows, batch)]
    sample_groups = [[g for g in groups if g == "all" or g == conditions[index]] for index in batch]

    for protocol in protocols:
        pairs = [apply_protocol(v, i, protocol) for v, i in zip(visibles, infrareds)]
        inputs = prepare_inputs(processor, [p[0] for p in pairs], [p[1] for p in pairs], device)
        if task == "segmentation":
            probabilities = segmentation_probabilities(
                model,
                inputs["pixel_values"],
                inputs["pixel_values_ir"],
                sliding_window=window,
                tta_flip=tta_flip,
                tta_scales=scales,
                size_divisor=getattr(processor, "size_divisor", 32),
            )
            predictions = processor.post_process_semantic_segmentation(probabilities, target_sizes=sizes)
        else:
            outputs = model(**inputs, return_dict=True)
            predictions = processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=sizes)
        for prediction, target, names in zip(predictions, targets, sample_groups):
            accumulator.update(protocol, names, prediction, target)


def results_to_markdown(result: dict) -> str:
    """Markdown: the protocol x lighting table (the headline metric, %), then the headline protocol's groups with
    per-class values (:func:`metrics_to_markdown`)."""
    from .report import metrics_to_markdown

    task, settings = result["task"], result["settings"]
    headline = settings["headline_protocol"]
    key, label = _HEADLINE[task]
    sizes = settings["group_sizes"]
    header = ["Missing modality"] + [f"{group} (n={sizes[group]})" for group in settings["groups"]]
    rows = []
    for protocol, groups in result["results"].items():
        cells = [_percent(groups[group][key]) for group in settings["groups"]]
        rows.append([_PROTOCOL_TITLES[protocol]] + cells)
    lines = [
        f"### {label} (%) by missing modality and lighting",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        f"### Protocol: {_PROTOCOL_TITLES[headline].lower()} missing ({result['num_samples']} samples)",
        "",
        metrics_to_markdown(result["results"][headline]),
    ]
    return "\n".join(lines)


def _percent(value) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{100.0 * float(value):.1f}"


def report_paths(out_dir, task: str) -> dict:
    """The files :func:`write_evaluation_report` writes for ``task``: name -> path."""
    out = Path(out_dir)
    paths = {"json": out / "metrics.json", "markdown": out / "metrics.md"}
    if task == "segmentation":
        paths["per_class"] = out / "per_class_iou.png"
        paths["confusion_matrix"] = out / "confusion_matrix.png"
    else:
        paths["per_class"] = out / "per_class_ap.png"
    return paths


def write_evaluation_report(result: dict, out_dir, overwrite: bool = False, title: Optional[str] = None) -> dict:
    """Write metrics.json, metrics.md and the PNG plots (per-class IoU / AP bars; segmentation: the confusion
    matrix of the headline protocol) into ``out_dir``. Existing files are refused unless ``overwrite``; the check
    runs before anything is written. Returns :func:`report_paths`."""
    from .report import plot_confusion_matrix, plot_per_class_bars, write_metrics_json

    task = result["task"]
    paths = report_paths(out_dir, task)
    existing = [str(path) for path in paths.values() if path.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)} already exist(s); pass overwrite=True (--overwrite) to replace")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    headline = result["settings"]["headline_protocol"]
    metrics = result["results"][headline]["all"]
    name = title or "IVGF"
    write_metrics_json(result, paths["json"], overwrite=overwrite)
    markdown = f"## {name}: {task} evaluation\n\n" + results_to_markdown(result)
    with open(paths["markdown"], "w" if overwrite else "x", encoding="utf-8") as handle:
        handle.write(markdown)
    if task == "segmentation":
        plot_per_class_bars(
            metrics["per_class_iou"], paths["per_class"], f"{name}: per-class IoU", "IoU (%)", overwrite=overwrite
        )
        plot_confusion_matrix(
            metrics["confusion_matrix"],
            result["class_names"],
            paths["confusion_matrix"],
            title=f"{name}: confusion matrix",
            overwrite=overwrite,
        )
    else:
        plot_per_class_bars(
            metrics["per_class_AP"],
            paths["per_class"],
            f"{name}: per-class AP50-95",
            "AP50-95 (%)",
            overwrite=overwrite,
        )
    return paths
