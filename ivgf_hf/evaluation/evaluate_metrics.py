"""ivgf_hf's metrics as Hugging Face ``evaluate`` modules, loaded offline from the files shipped in the package.

``load_evaluate_metric("rgbt_mean_iou")`` takes the Hub ``mean_iou``'s ``compute`` arguments (predictions,
references, num_labels, ignore_index) and ``"rgbt_detection_map"`` per-image box dicts; both accept ``conditions``
(e.g. day / night per image). The numbers are those of :class:`SegmentationMetric` / :class:`DetectionMetric`.
"""

from pathlib import Path

__all__ = ["EVALUATE_METRICS", "load_evaluate_metric"]

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
