"""``rgbt_detection_map``: COCO box mAP of ivgf_hf's :class:`DetectionMetric` as an ``evaluate`` module, with day /
night groups.

An ``evaluate`` module script, loaded with ``ivgf_hf.evaluation.load_evaluate_metric("rgbt_detection_map")``
(offline: the file ships in the package).
"""

import datasets
import evaluate
import torch

from ivgf_hf.evaluation.detection import DetectionMetric

_DESCRIPTION = """COCO-style box mAP (IoU 0.50:0.95, 0.50, 0.75, per-class AP) computed by ivgf_hf's `DetectionMetric`
(torchmetrics' MeanAveragePrecision). With `conditions` (one name per image, e.g. "day" / "night") the same metrics
are also returned per condition."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[dict]`): per image {"boxes": (n, 4) absolute (x0, y0, x1, y1), "scores": (n,), "labels": (n,)
        0-based class ids}, e.g. from the image processor's `post_process_object_detection`.
    references (`list[dict]`): per image {"boxes": (m, 4) absolute (x0, y0, x1, y1), "labels": (m,)}.
    num_labels (`int`): number of classes.
    conditions (`list[str]`, *optional*): one condition per image (e.g. "day", "night").
Returns:
    `mAP`, `mAP50`, `mAP75` (floats), `per_class_AP`, `per_class_AP50` ({class id as str: float}, NaN for a class
    without ground truth), and with `conditions` a `per_condition` dict {condition: the same entries}.
"""

_BOXES = datasets.Sequence(datasets.Sequence(datasets.Value("float64")))
_LABELS = datasets.Sequence(datasets.Value("int64"))


def _tensors(entry: dict) -> dict:
    tensors = {key: torch.as_tensor(value) for key, value in entry.items()}
    tensors["boxes"] = tensors["boxes"].reshape(-1, 4).float()
    return tensors


class RGBTDetectionMAP(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": {
                        "boxes": _BOXES,
                        "scores": datasets.Sequence(datasets.Value("float64")),
                        "labels": _LABELS,
                    },
                    "references": {"boxes": _BOXES, "labels": _LABELS},
                }
            ),
        )

    def _compute(self, predictions, references, num_labels, conditions=None):
        if len(predictions) != len(references):
            raise ValueError(f"got {len(predictions)} predictions for {len(references)} references")
        if conditions is not None and len(conditions) != len(references):
            raise ValueError(f"got {len(conditions)} conditions for {len(references)} images")
        predictions = [_tensors(entry) for entry in predictions]
        references = [_tensors(entry) for entry in references]
        result = self._map(predictions, references, num_labels)
        if conditions is not None:
            result["per_condition"] = {
                name: self._map(
                    [p for p, c in zip(predictions, conditions) if c == name],
                    [r for r, c in zip(references, conditions) if c == name],
                    num_labels,
                )
                for name in dict.fromkeys(conditions)
            }
        return result

    @staticmethod
    def _map(predictions, references, num_labels) -> dict:
        metric = DetectionMetric(num_labels)
        metric.update(predictions, references)
        return metric.compute()
