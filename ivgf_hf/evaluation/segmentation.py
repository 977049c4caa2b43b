"""Semantic segmentation metrics: a running confusion matrix with mIoU, accuracies and per-class IoU.

All values are fractions in [0, 1]. Per-class values follow mmseg's convention: a class whose IoU (or
accuracy) is 0/0 -- absent from both ground truth and prediction (or, for accuracy, absent from ground truth)
-- is NaN and left out of the mean (``nanmean``). A class that is predicted but absent from the ground truth
has IoU 0 and counts in the mean. Pixels whose target equals ``ignore_index`` are skipped entirely.
"""

from typing import Callable, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F

try:
    from torchmetrics import Metric
except ModuleNotFoundError as error:  # pragma: no cover - depends on the installed extras
    raise ModuleNotFoundError(
        "ivgf_hf.evaluation needs torchmetrics; install it with `pip install 'ivgf-hf[train]'`"
    ) from error

__all__ = [
    "SegmentationMetric",
    "SegmentationMetricGroup",
    "preprocess_logits_for_metrics",
    "segmentation_compute_metrics",
]

# The value transformers' Trainer pads labels and predictions with when it concatenates or gathers them.
TRAINER_PAD_INDEX = -100


def _resolve_class_names(num_classes: int, class_names: Optional[Sequence[str]]) -> list:
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if class_names is None:
        return [str(i) for i in range(num_classes)]
    names = [str(name) for name in class_names]
    if len(names) != num_classes:
        raise ValueError(f"class_names has {len(names)} entries but num_classes is {num_classes}: {names}")
    if len(set(names)) != len(names):
        raise ValueError(f"class_names must be unique, got {names}")
    return names


def _check_ids_in_range(ids: torch.Tensor, valid: Optional[torch.Tensor], num_classes: int, what: str) -> None:
    """Raise if any class id at a ``valid`` position (all if ``None``) lies outside [0, num_classes)."""
    bad = (ids < 0) | (ids >= num_classes)
    if valid is not None:
        bad &= valid
    if bool(bad.any()):
        examples = torch.unique(ids[bad])[:8].tolist()
        raise ValueError(f"{what} holds class ids outside [0, {num_classes}) that are not the ignore index: {examples}")


class SegmentationMetric(Metric):
    """Running confusion matrix over ``num_classes`` classes, reduced to IoU and accuracy on :meth:`compute`.

    Memory is constant (one ``num_classes x num_classes`` int64 matrix). Under ``torch.distributed`` the matrix is
    summed across processes by torchmetrics when :meth:`compute` runs (pass ``sync_on_compute=False`` when the
    inputs were already gathered, as the Trainer does).

    Args:
        num_classes: number of classes C; class ids are 0..C-1.
        ignore_index: target value whose pixels are skipped (``None``: none). Must not be a class id.
        class_names: C names for the per-class entries (default ``"0"``, ``"1"``, ...).
        **kwargs: forwarded to :class:`torchmetrics.Metric` (e.g. ``sync_on_compute``).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        num_classes: int,
        ignore_index: Optional[int] = 255,
        class_names: Optional[Sequence[str]] = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.class_names = _resolve_class_names(num_classes, class_names)
        if ignore_index is not None and 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index={ignore_index} is also a class id (num_classes={num_classes})")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.add_state("confmat", default=torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def _class_ids(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Predictions as class ids with the target's shape; logits are reduced with argmax over dim 1."""
        if preds.ndim == target.ndim + 1:
            if not preds.is_floating_point():
                raise ValueError(
                    f"predictions of shape {tuple(preds.shape)} have a class axis but are not float logits"
                )
            if preds.shape[1] != self.num_classes:
                raise ValueError(
                    f"logits have {preds.shape[1]} channels (shape {tuple(preds.shape)}) "
                    f"but num_classes is {self.num_classes}"
                )
            if preds.shape[0] != target.shape[0] or preds.shape[2:] != target.shape[1:]:
                raise ValueError(
                    f"logits of shape {tuple(preds.shape)} do not match target of shape {tuple(target.shape)}; "
                    "upsample the logits to the label size first"
                )
            return preds.argmax(dim=1)
        if preds.ndim == target.ndim:
            if preds.is_floating_point():
                raise ValueError(
                    f"predictions of shape {tuple(preds.shape)} are float without a class axis; "
                    "pass logits (B, C, H, W) or integer class ids (B, H, W)"
                )
            if preds.shape != target.shape:
                raise ValueError(
                    f"predictions of shape {tuple(preds.shape)} do not match target of shape {tuple(target.shape)}"
                )
            return preds
        raise ValueError(
            f"cannot pair predictions of shape {tuple(preds.shape)} with target of shape {tuple(target.shape)}; "
            "expected ids (B, H, W) or logits (B, C, H, W) for a (B, H, W) target"
        )

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch (moved to the metric's device).

        Args:
            preds: class ids ``(B, H, W)`` (integer) or logits ``(B, C, H, W)`` (float).
            target: class ids ``(B, H, W)`` (integer), ``ignore_index`` where unlabelled.
        """
        preds = torch.as_tensor(preds, device=self.device)
        target = torch.as_tensor(target, device=self.device)
        if target.is_floating_point() or target.dtype == torch.bool:
            raise ValueError(f"target must hold integer class ids, got dtype {target.dtype}")
        ids = self._class_ids(preds, target)
        valid = None if self.ignore_index is None else target != self.ignore_index
        _check_ids_in_range(target, valid, self.num_classes, "target")
        _check_ids_in_range(ids, valid, self.num_classes, "predictions")
        # One bincount over target * C + prediction; ignored pixels go to an extra last bin that is dropped.
        # (torch.bincount directly: torchmetrics' helper falls back to an (N, C*C) tensor in deterministic mode.)
        cells = self.num_classes * self.num_classes
        index = target.long() * self.num_classes + ids.long()
        if valid is not None:
            index = torch.where(valid, index, cells)
        counts = torch.bincount(index.reshape(-1), minlength=cells + 1)[:cells]
        self.confmat += counts.reshape(self.num_classes, self.num_classes)

    def compute(self) -> dict:
        """Metrics of everything added so far.

        Returns:
            ``mIoU``, ``pixel_accuracy``, ``mean_accuracy`` (floats in [0, 1], NaN if undefined),
            ``per_class_iou`` and ``per_class_accuracy`` (name -> float, NaN for 0/0), ``confusion_matrix``
            (C lists of C ints; row = ground truth, column = prediction).
        """
        confmat = self.confmat.double()
        true_positive = confmat.diagonal()
        gt_pixels = confmat.sum(dim=1)
        union = gt_pixels + confmat.sum(dim=0) - true_positive
        iou = true_positive / union
        accuracy = true_positive / gt_pixels
        return {
            "mIoU": float(torch.nanmean(iou)),
            "pixel_accuracy": float(true_positive.sum() / confmat.sum()),
            "mean_accuracy": float(torch.nanmean(accuracy)),
            "per_class_iou": dict(zip(self.class_names, iou.tolist())),
            "per_class_accuracy": dict(zip(self.class_names, accuracy.tolist())),
            "confusion_matrix": self.confmat.tolist(),
        }


class SegmentationMetricGroup(torch.nn.Module):
    """Several named :class:`SegmentationMetric` s with the same classes, e.g. ``"all"``, ``"day"``, ``"night"``.

    The names are fixed at construction so that every process computes (and synchronises) the same metrics.
    """

    def __init__(
        self,
        names: Sequence[str],
        num_classes: int,
        ignore_index: Optional[int] = 255,
        class_names: Optional[Sequence[str]] = None,
        **kwargs,
    ):
        super().__init__()
        names = list(names)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"names must be a non-empty list of unique strings, got {names}")
        self.metrics = torch.nn.ModuleDict(
            {name: SegmentationMetric(num_classes, ignore_index, class_names, **kwargs) for name in names}
        )

    def __getitem__(self, name: str) -> SegmentationMetric:
        if name not in self.metrics:
            raise KeyError(f"unknown metric group {name!r}; known: {list(self.metrics)}")
        return self.metrics[name]

    def update(self, preds: torch.Tensor, target: torch.Tensor, group: Union[str, Sequence[str]]) -> None:
        """Add a batch to one group (``group`` a name) or route each sample (``group`` a list of B names)."""
        if isinstance(group, str):
            self[group].update(preds, target)
            return
        group = list(group)
        if len(group) != target.shape[0]:
            raise ValueError(f"got {len(group)} group names for a batch of {target.shape[0]} samples")
        for name in dict.fromkeys(group):
            rows = torch.tensor([i for i, g in enumerate(group) if g == name], device=target.device)
            self[name].update(preds.index_select(0, rows.to(preds.device)), target.index_select(0, rows))

    def compute(self) -> dict:
        """``{name: SegmentationMetric.compute()}`` in construction order."""
        return {name: metric.compute() for name, metric in self.metrics.items()}

    def reset(self) -> None:
        for metric in self.metrics.values():
            metric.reset()


def _logits_to_ids(logits: torch.Tensor, size: Optional[Sequence[int]]) -> torch.Tensor:
    """Argmax class ids ``(B, H, W)`` of logits ``(B, C, h, w)``, upsampled bilinearly to ``size`` first if given."""
    if size is not None and tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits.float(), size=tuple(size), mode="bilinear", align_corners=False)
    return logits.argmax(dim=1)


def preprocess_logits_for_metrics(logits, labels: Optional[torch.Tensor]) -> torch.Tensor:
    """For ``Trainer(preprocess_logits_for_metrics=...)``: logits ``(B, C, h, w)`` -> class ids ``(B, H, W)``.

    Takes the first element when the model returns a tuple (logits first, as transformers outputs do) and
    upsamples bilinearly to the labels' ``(H, W)`` when the sizes differ, so only int64 ids are kept.
    """
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    if logits.ndim != 4:
        raise ValueError(f"expected segmentation logits (B, C, H, W), got shape {tuple(logits.shape)}")
    return _logits_to_ids(logits, labels.shape[-2:] if labels is not None else None)


def segmentation_compute_metrics(
    num_classes: int,
    ignore_index: Optional[int] = 255,
    class_names: Optional[Sequence[str]] = None,
) -> Callable:
    """A ``compute_metrics`` for ``transformers.Trainer`` that keeps a running confusion matrix.

    With ``TrainingArguments(batch_eval_metrics=True)`` the Trainer calls it once per batch with
    ``compute_result=False`` (it returns ``{}``) and on the last batch with ``compute_result=True`` (it returns the
    metrics and starts over). Without ``batch_eval_metrics`` it is called once on the whole set and works too.
    The Trainer gathers predictions across processes before calling it, so this metric does not synchronise.
    Predictions may be class ids (from :func:`preprocess_logits_for_metrics`) or logits; labels padded by the
    Trainer (-100) are ignored.

    Returns a callable ``(eval_pred, compute_result=True) -> dict`` of scalars: ``mIoU``, ``pixel_accuracy``,
    ``mean_accuracy`` and ``IoU_<class name>`` per class (fractions in [0, 1], NaN for an undefined class IoU).
    """
    ignored = TRAINER_PAD_INDEX if ignore_index is None else ignore_index
    metric = SegmentationMetric(num_classes, ignored, class_names, sync_on_compute=False)

    def compute_metrics(eval_pred, compute_result: bool = True) -> dict:
        preds, labels = eval_pred.predictions, eval_pred.label_ids
        if isinstance(preds, (tuple, list)):
            preds = preds[0]
        preds, labels = torch.as_tensor(preds), torch.as_tensor(labels)
        if metric.device != labels.device:
            metric.to(labels.device)
        labels = labels.masked_fill(labels == TRAINER_PAD_INDEX, ignored)
        if preds.is_floating_point() and preds.ndim == labels.ndim + 1:
            preds = _logits_to_ids(preds, labels.shape[-2:])
        metric.update(preds, labels)
        if not compute_result:
            return {}
        result = metric.compute()
        metric.reset()
        return _flatten_for_trainer(result)

    return compute_metrics


def _flatten_for_trainer(result: Mapping) -> dict:
    """Scalar-only view of :meth:`SegmentationMetric.compute` (Trainer logs must be scalars)."""
    flat = {key: result[key] for key in ("mIoU", "pixel_accuracy", "mean_accuracy")}
    flat.update({f"IoU_{name}": value for name, value in result["per_class_iou"].items()})
    return flat
