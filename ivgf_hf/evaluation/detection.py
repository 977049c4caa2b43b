"""COCO-style box detection metrics (mAP50-95, mAP50, mAP75, per-class AP) on torchmetrics.

The numbers are COCO's: IoU thresholds 0.50:0.05:0.95, 101-point interpolated precision, at most 100
detections per image, area range "all". All values are fractions in [0, 1]. A class without any ground-truth
box has no AP (NaN) and is left out of the means, as in COCO.
"""

import importlib.util
from typing import Mapping, Optional, Sequence

import torch

from .segmentation import _resolve_class_names

try:
    from torchmetrics.detection import MeanAveragePrecision
except ModuleNotFoundError as error:  # pragma: no cover - depends on the installed extras
    raise ModuleNotFoundError(
        "ivgf_hf.evaluation needs torchmetrics; install it with `pip install 'ivgf-hf[train]'`"
    ) from error

__all__ = ["DetectionMetric"]

BACKENDS = ("pycocotools", "faster_coco_eval")


def _nan_if_missing(value: float) -> float:
    """COCO marks an undefined AP with -1; report it as NaN."""
    return float("nan") if value < 0 else float(value)


def _as_tensor(entry: Mapping, key: str, index: int, what: str) -> torch.Tensor:
    if key not in entry:
        hint = ""
        if key == "labels" and "class_labels" in entry:
            hint = (
                "; this looks like transformers training labels (class_labels, normalised cxcywh boxes): "
                "convert them to 'labels' and absolute xyxy 'boxes'"
            )
        raise KeyError(f"{what}[{index}] has no {key!r} (keys: {sorted(entry)}){hint}")
    return torch.as_tensor(entry[key])


def _check_boxes(boxes: torch.Tensor, index: int, what: str) -> torch.Tensor:
    boxes = boxes.float().reshape(-1, 4) if boxes.numel() == 0 else boxes.float()
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{what}[{index}]['boxes'] must have shape (N, 4) in absolute xyxy, got {tuple(boxes.shape)}")
    if not bool(torch.isfinite(boxes).all()):
        raise ValueError(f"{what}[{index}]['boxes'] holds non-finite values")
    inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bool(inverted.any()):
        raise ValueError(
            f"{what}[{index}]['boxes'] has boxes with x2 < x1 or y2 < y1 (expected xyxy): "
            f"{boxes[inverted][:4].tolist()}"
        )
    return boxes


class DetectionMetric(torch.nn.Module):
    """Box mAP over ``num_classes`` classes (ids 0..C-1), wrapping torchmetrics' ``MeanAveragePrecision``.

    Detections and targets are stored until :meth:`compute` (COCO evaluation needs them all); under
    ``torch.distributed`` torchmetrics gathers them from every process at :meth:`compute`.

    Args:
        num_classes: number of classes C.
        class_names: C names for the per-class entries (default ``"0"``, ``"1"``, ...).
        backend: ``"pycocotools"`` (the COCO reference) or ``"faster_coco_eval"`` (same numbers, about 4x
            faster); ``None`` picks faster_coco_eval when it is installed, else pycocotools.
        **kwargs: forwarded to ``MeanAveragePrecision`` (e.g. ``sync_on_compute``).
    """

    def __init__(
        self,
        num_classes: int,
        class_names: Optional[Sequence[str]] = None,
        backend: Optional[str] = None,
        **kwargs,
    ):
        super().__init__()
        if backend is None:
            backend = "faster_coco_eval" if importlib.util.find_spec("faster_coco_eval") else "pycocotools"
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.class_names = _resolve_class_names(num_classes, class_names)
        self.num_classes = num_classes
        self.backend = backend
        self.map = MeanAveragePrecision(
            box_format="xyxy",
            iou_type="bbox",
            class_metrics=True,
            extended_summary=True,
            backend=backend,
            **kwargs,
        )

    def _check_labels(self, labels: torch.Tensor, count: int, index: int, what: str) -> torch.Tensor:
        if labels.numel() == 0:
            labels = labels.long().reshape(0)
        if labels.is_floating_point() or labels.ndim != 1 or labels.numel() != count:
            raise ValueError(
                f"{what}[{index}]['labels'] must be {count} integer class ids, "
                f"got dtype {labels.dtype} shape {tuple(labels.shape)}"
            )
        bad = (labels < 0) | (labels >= self.num_classes)
        if bool(bad.any()):
            raise ValueError(
                f"{what}[{index}]['labels'] holds ids outside [0, {self.num_classes}): {labels[bad][:8].tolist()}"
            )
        return labels.long()

    def update(self, preds: Sequence[Mapping], targets: Sequence[Mapping]) -> None:
        """Add a batch of images.

        Args:
            preds: per image ``{"boxes": (N, 4) absolute xyxy, "scores": (N,), "labels": (N,) int}``
                (the format of a processor's ``post_process_object_detection``).
            targets: per image ``{"boxes": (M, 4) absolute xyxy, "labels": (M,) int}``, optionally
                ``"iscrowd"`` and ``"area"`` as in COCO.
        """
        if len(preds) != len(targets):
            raise ValueError(f"got {len(preds)} prediction entries for {len(targets)} targets")
        clean_preds, clean_targets = [], []
        for index, (pred, target) in enumerate(zip(preds, targets)):
            boxes = _check_boxes(_as_tensor(pred, "boxes", index, "preds"), index, "preds")
            scores = _as_tensor(pred, "scores", index, "preds").float()
            if scores.ndim != 1 or scores.numel() != boxes.shape[0]:
                raise ValueError(
                    f"preds[{index}]['scores'] must have shape ({boxes.shape[0]},), got {tuple(scores.shape)}"
                )
            labels = self._check_labels(_as_tensor(pred, "labels", index, "preds"), boxes.shape[0], index, "preds")
            clean_preds.append({"boxes": boxes, "scores": scores, "labels": labels})

            boxes = _check_boxes(_as_tensor(target, "boxes", index, "targets"), index, "targets")
            labels = self._check_labels(
                _as_tensor(target, "labels", index, "targets"), boxes.shape[0], index, "targets"
            )
            extras = {key: torch.as_tensor(target[key]) for key in ("iscrowd", "area") if key in target}
            clean_targets.append({"boxes": boxes, "labels": labels, **extras})
        self.map.update(clean_preds, clean_targets)

    def compute(self) -> dict:
        """Metrics of everything added so far.

        Returns:
            ``mAP`` (AP averaged over IoU 0.50:0.95), ``mAP50``, ``mAP75`` as floats, and ``per_class_AP`` /
            ``per_class_AP50`` (name -> float) for every class; NaN where a class has no ground truth.
        """
        result = self.map.compute()
        per_class = torch.full((self.num_classes,), float("nan"), dtype=torch.float64)
        per_class_50 = per_class.clone()
        classes = result["classes"].reshape(-1).long()
        if classes.numel() > 0:
            ap = result["map_per_class"].reshape(-1).double()
            per_class[classes] = torch.where(ap < 0, float("nan"), ap)
            per_class_50[classes] = self._per_class_ap_at(result["precision"], 0.5)
        return {
            "mAP": _nan_if_missing(float(result["map"])),
            "mAP50": _nan_if_missing(float(result["map_50"])),
            "mAP75": _nan_if_missing(float(result["map_75"])),
            "per_class_AP": dict(zip(self.class_names, per_class.tolist())),
            "per_class_AP50": dict(zip(self.class_names, per_class_50.tolist())),
        }

    def _per_class_ap_at(self, precision: torch.Tensor, iou_threshold: float) -> torch.Tensor:
        """AP per seen class at one IoU threshold, from COCO's precision array.

        ``precision`` has shape (IoU thresholds, 101 recall points, classes, area ranges, max detections);
        COCO's AP is the mean over recall points of area range "all" (0) at the largest max detections (-1),
        with -1 entries (no ground truth) excluded.
        """
        thresholds = torch.tensor(self.map.iou_thresholds, dtype=torch.float64)
        row = int(torch.argmin((thresholds - iou_threshold).abs()))
        curve = precision[row, :, :, 0, -1].double()
        defined = curve > -1
        return (curve * defined).sum(dim=0) / defined.sum(dim=0)

    def reset(self) -> None:
        self.map.reset()
