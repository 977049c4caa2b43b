"""Metric reports: strict JSON, a markdown table and PNG plots a model card can embed.

Inputs are the dicts returned by ``SegmentationMetric.compute`` / ``DetectionMetric.compute`` (fractions in
[0, 1]), or a mapping of group name to such a dict (e.g. ``{"all": ..., "day": ..., "night": ...}``). Tables and
plots show percentages. No function overwrites an existing file unless ``overwrite=True``.
"""

import json
import math
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np

__all__ = ["write_metrics_json", "metrics_to_markdown", "plot_per_class_bars", "plot_confusion_matrix"]

PathLike = Union[str, Path]

# (headline keys with their labels, per-class keys with their column labels) per kind of result
_LAYOUTS = {
    "segmentation": (
        {"mIoU": "mIoU", "pixel_accuracy": "Pixel accuracy", "mean_accuracy": "Mean accuracy"},
        {"per_class_iou": "IoU (%)", "per_class_accuracy": "Accuracy (%)"},
    ),
    "detection": (
        {"mAP": "mAP50-95", "mAP50": "mAP50", "mAP75": "mAP75"},
        {"per_class_AP": "AP50-95 (%)", "per_class_AP50": "AP50 (%)"},
    ),
}


def _prepare_output(path: PathLike, overwrite: bool) -> Path:
    """Refuse an existing file unless ``overwrite``; create the parent folder."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a file path")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _jsonable(value):
    """Plain Python values for ``json``: tensors/arrays to lists, non-finite floats to ``None``."""
    if hasattr(value, "tolist"):  # torch.Tensor, numpy array or scalar
        value = value.tolist()
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_metrics_json(metrics: Mapping, path: PathLike, overwrite: bool = False) -> Path:
    """Write ``metrics`` as strict JSON (NaN becomes ``null``), values unchanged (fractions). Returns the path."""
    path = _prepare_output(path, overwrite)
    text = json.dumps(_jsonable(metrics), indent=2, allow_nan=False)
    with open(path, "w" if overwrite else "x", encoding="utf-8") as handle:
        handle.write(text + "\n")
    return path


def _percent(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100.0 * float(value):.1f}"


def _cell(text) -> str:
    return str(text).replace("|", "\\|")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _kind(result: Mapping) -> Optional[str]:
    for kind, (headline, _) in _LAYOUTS.items():
        if all(key in result for key in headline):
            return kind
    return None


def metrics_to_markdown(metrics: Mapping) -> str:
    """Markdown tables (values in %, 1 decimal, ``n/a`` when undefined) of one result or of named groups.

    One result gives a headline table (``| Metric | Value |``) and a per-class table (IoU and accuracy, or AP50-95
    and AP50). Groups give one column per group, with the per-class IoU (segmentation) or AP50-95 (detection).
    """
    kind = _kind(metrics)
    if kind is not None:
        groups, single = {"Value": metrics}, True
    else:
        groups, single = dict(metrics), False
        kinds = {name: _kind(result) if isinstance(result, Mapping) else None for name, result in groups.items()}
        if not groups or None in kinds.values() or len(set(kinds.values())) != 1:
            raise ValueError(
                "metrics must be one segmentation/detection result (with mIoU... or mAP...) or a mapping of "
                f"group name to results of one kind; got keys {list(metrics)}"
            )
        kind = next(iter(kinds.values()))
    headline, per_class_keys = _LAYOUTS[kind]

    headline_rows = [[label] + [_percent(r[key]) for r in groups.values()] for key, label in headline.items()]
    parts = [_table(["Metric"] + list(groups), headline_rows)]

    first = next(iter(groups.values()))
    class_names = list(first[next(iter(per_class_keys))])
    if single:
        columns = [key for key in per_class_keys if key in first]
        rows = [[name] + [_percent(first[key].get(name)) for key in columns] for name in class_names]
        parts.append(_table(["Class"] + [per_class_keys[key] for key in columns], rows))
    else:
        key = next(iter(per_class_keys))
        rows = [[name] + [_percent(r[key].get(name)) for r in groups.values()] for name in class_names]
        parts.append(f"Per-class {per_class_keys[key]}:\n\n" + _table(["Class"] + list(groups), rows))
    return "\n\n".join(parts) + "\n"


def _agg_figure(width: float, height: float):
    """A matplotlib figure on the Agg canvas, without pyplot (no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save_png(figure, path: PathLike, overwrite: bool) -> Path:
    path = _prepare_output(path, overwrite)
    with open(path, "wb" if overwrite else "xb") as handle:
        figure.savefig(handle, format="png", dpi=120)
    return path


def plot_per_class_bars(
    per_class: Mapping[str, float],
    path: PathLike,
    title: str,
    ylabel: str = "IoU (%)",
    overwrite: bool = False,
) -> Path:
    """Bar chart PNG of per-class values (fractions, drawn in %); undefined classes are marked ``n/a``."""
    if not per_class:
        raise ValueError("per_class is empty; nothing to plot")
    names = [str(name) for name in per_class]
    values = np.array([np.nan if v is None else 100.0 * float(v) for v in per_class.values()], dtype=float)
    figure = _agg_figure(max(4.0, 0.6 * len(names) + 1.5), 3.5)
    axes = figure.add_subplot()
    positions = np.arange(len(names))
    bars = axes.bar(positions, np.nan_to_num(values, nan=0.0), color="tab:blue")
    axes.bar_label(bars, labels=["n/a" if np.isnan(v) else f"{v:.1f}" for v in values], fontsize=8)
    axes.set_xticks(positions, names, rotation=45, ha="right")
    axes.set_ylim(0, 105)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    return _save_png(figure, path, overwrite)


def plot_confusion_matrix(
    matrix,
    class_names: Sequence[str],
    path: PathLike,
    normalize: bool = True,
    title: str = "Confusion matrix",
    overwrite: bool = False,
) -> Path:
    """Confusion matrix PNG (rows ground truth, columns prediction).

    With ``normalize`` each row is divided by its total (per-class recall, in %); rows without ground truth stay
    blank. Cells are annotated when there are at most 20 classes.
    """
    counts = np.asarray(matrix, dtype=float)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"matrix must be square (C, C), got shape {counts.shape}")
    if len(class_names) != counts.shape[0]:
        raise ValueError(f"{len(class_names)} class names for a {counts.shape[0]}-class matrix")
    if normalize:
        totals = counts.sum(axis=1, keepdims=True)
        shown = np.divide(100.0 * counts, totals, out=np.full_like(counts, np.nan), where=totals > 0)
    else:
        shown = counts
    size = max(4.0, 0.55 * len(class_names) + 2.0)
    figure = _agg_figure(size + 1.0, size)
    axes = figure.add_subplot()
    image = axes.imshow(shown, cmap="Blues", vmin=0, vmax=100 if normalize else None)
    figure.colorbar(image, ax=axes, label="% of ground-truth pixels" if normalize else "count")
    ticks = np.arange(len(class_names))
    axes.set_xticks(ticks, [str(n) for n in class_names], rotation=45, ha="right")
    axes.set_yticks(ticks, [str(n) for n in class_names])
    axes.set_xlabel("Prediction")
    axes.set_ylabel("Ground truth")
    axes.set_title(title)
    if len(class_names) <= 20:
        threshold = np.nanmax(shown) / 2 if np.isfinite(shown).any() else 0.0
        for (row, col), value in np.ndenumerate(shown):
            if np.isfinite(value):
                text = f"{value:.1f}" if normalize else f"{int(value)}"
                color = "white" if value > threshold else "black"
                axes.text(col, row, text, ha="center", va="center", fontsize=7, color=color)
    return _save_png(figure, path, overwrite)
