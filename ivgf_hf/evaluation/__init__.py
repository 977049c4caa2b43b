"""Evaluation metrics, reports and the runner: segmentation mIoU, detection mAP, JSON / markdown / PNG outputs,
``evaluate_model`` (missing-modality protocols, day / night groups, sliding window, test-time augmentation), and
the metrics as Hugging Face ``evaluate`` modules (``load_evaluate_metric("rgbt_mean_iou")``).

Names are loaded on first use, so ``import ivgf_hf.evaluation`` stays light: torchmetrics (which pulls in
torchvision and transformers) is imported only when a metric class is used, matplotlib only when plotting.
"""

import importlib

_EXPORTS = {
    "SegmentationMetric": "segmentation",
    "SegmentationMetricGroup": "segmentation",
    "preprocess_logits_for_metrics": "segmentation",
    "segmentation_compute_metrics": "segmentation",
    "DetectionMetric": "detection",
    "load_evaluate_metric": "evaluate_metrics",
    "EVALUATE_METRICS": "evaluate_metrics",
    "evaluate_compute_metrics": "evaluate_metrics",
    "write_metrics_json": "report",
    "metrics_to_markdown": "report",
    "plot_per_class_bars": "report",
    "plot_confusion_matrix": "report",
    "evaluate_model": "runner",
    "results_to_markdown": "runner",
    "write_evaluation_report": "runner",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
