"""ivgf_hf's metrics as Hugging Face ``evaluate`` modules, loaded offline from the files shipped in the package.

``load_evaluate_metric("rgbt_mean_iou")`` takes the Hub ``mean_iou``'s ``compute`` arguments (predictions,
references, num_labels, ignore_index) and ``"rgbt_detection_map"`` per-image box dicts; both accept ``conditions``
(e.g. day / night per image). The numbers are those of :class:`SegmentationMetric` / :class:`DetectionMetric`.
"""

from pathlib import Path

__all__ = ["EVALUATE_METRICS", "load_evaluate_metric", "evaluate_compute_metrics"]

_SCRIPTS = Path(__file__).resolve().parent / "evaluate_scripts"
EVALUATE_METRICS = ("rgbt_mean_iou", "rgbt_detection_map")


def load_evaluate_metric(name: str, **kwargs):
    """``evaluate.load`` of the module script ``name`` shipped with ivgf_hf (no download); ``kwargs`` go to it."""
    if name not in EVALUATE_METRICS:
        raise ValueError(f"unknown metric {name!r}; ivgf_hf ships {', '.join(EVALUATE_METRICS)}")
    try:
        import evaluate
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "load_evaluate_metric needs the `evaluate` package; install it with `pip install 'ivgf-hf[train]'`"
        ) from error
    return evaluate.load(str(_SCRIPTS / f"{name}.py"), **kwargs)


def evaluate_compute_metrics(metric, num_labels: int, ignore_index: int = 255):
    """A ``Trainer`` ``compute_metrics`` on an ``rgbt_mean_iou`` module (e.g. ``build_trainer(compute_metrics=...)``).

    Works with ``batch_eval_metrics=True`` (each batch is added with ``add_batch``, the last call computes) and
    without (one call with the whole set). Predictions are class ids ``(B, H, W)`` (the recipe's
    ``preprocess_logits_for_metrics``); labels padded by the Trainer (-100) become ``ignore_index``.

    Returns a callable ``(eval_pred, compute_result=True) -> dict``: ``mean_iou``, ``mean_accuracy``,
    ``overall_accuracy`` and ``IoU_<class id>`` per class.
    """
    import numpy as np

    def compute_metrics(eval_pred, compute_result: bool = True) -> dict:
        predictions, labels = eval_pred.predictions, eval_pred.label_ids
        if isinstance(predictions, (tuple, list)):
            predictions = predictions[0]
        predictions = np.asarray(predictions.cpu() if hasattr(predictions, "cpu") else predictions)
        labels = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels)
        labels = np.where(labels == -100, ignore_index, labels)
        metric.add_batch(predictions=list(predictions), references=list(labels))
        if not compute_result:
            return {}
        result = metric.compute(num_labels=num_labels, ignore_index=ignore_index)
        scalars = {key: result[key] for key in ("mean_iou", "mean_accuracy", "overall_accuracy")}
        scalars.update({f"IoU_{index}": float(value) for index, value in enumerate(result["per_category_iou"])})
        return scalars

    return compute_metrics
