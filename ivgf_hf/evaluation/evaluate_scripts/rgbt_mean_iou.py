"""``rgbt_mean_iou``: the Hub's ``mean_iou`` interface on ivgf_hf's :class:`SegmentationMetric`, with day / night
groups.

An ``evaluate`` module script, loaded with ``ivgf_hf.evaluation.load_evaluate_metric("rgbt_mean_iou")`` (offline: the
file ships in the package).
"""

import datasets
import evaluate
import numpy as np
import torch

from ivgf_hf.evaluation.segmentation import SegmentationMetric

_DESCRIPTION = """Mean intersection over union of semantic segmentation maps (a confusion matrix over the whole set),
as the Hub's `mean_iou`, computed by ivgf_hf's `SegmentationMetric` (mmseg's NaN convention: a class absent from both
the references and the predictions has IoU NaN and is left out of the mean). With `conditions` (one name per image,
e.g. "day" / "night") the same metrics are also returned per condition."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[ndarray]`): predicted class ids, one (height, width) map per image.
    references (`list[ndarray]`): ground-truth class ids, same shapes; `ignore_index` where unlabelled.
    num_labels (`int`): number of classes.
    ignore_index (`int`): reference value whose pixels are skipped (not a class id; e.g. 255).
    nan_to_num (`float`, *optional*): replace NaN (undefined) per-class values with this number.
    conditions (`list[str]`, *optional*): one condition per image (e.g. "day", "night").
Returns:
    `mean_iou`, `mean_accuracy`, `overall_accuracy` (floats), `per_category_iou`, `per_category_accuracy` (ndarrays
    of `num_labels`), and with `conditions` a `per_condition` dict {condition: the same five entries}.
Example:
    >>> metric = ivgf_hf.evaluation.load_evaluate_metric("rgbt_mean_iou")
    >>> metric.compute(predictions=[pred], references=[label], num_labels=9, ignore_index=255)["mean_iou"]
"""


def _result(metric: SegmentationMetric, nan_to_num) -> dict:
    values = metric.compute()
    iou = np.array(list(values["per_class_iou"].values()), dtype=np.float64)
    accuracy = np.array(list(values["per_class_accuracy"].values()), dtype=np.float64)
    if nan_to_num is not None:
        iou, accuracy = np.nan_to_num(iou, nan=nan_to_num), np.nan_to_num(accuracy, nan=nan_to_num)
    return {
        "mean_iou": values["mIoU"],
        "mean_accuracy": values["mean_accuracy"],
        "overall_accuracy": values["pixel_accuracy"],
        "per_category_iou": iou,
        "per_category_accuracy": accuracy,
    }


class RGBTMeanIoU(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Sequence(datasets.Value("uint16"))),
                    "references": datasets.Sequence(datasets.Sequence(datasets.Value("uint16"))),
                }
            ),
        )

    def _compute(self, predictions, references, num_labels, ignore_index, nan_to_num=None, conditions=None):
        if len(predictions) != len(references):
            raise ValueError(f"got {len(predictions)} predictions for {len(references)} references")
        if conditions is not None and len(conditions) != len(references):
            raise ValueError(f"got {len(conditions)} conditions for {len(references)} images")
        overall = SegmentationMetric(num_labels, ignore_index, sync_on_compute=False)
        groups = {
            name: SegmentationMetric(num_labels, ignore_index, sync_on_compute=False)
            for name in dict.fromkeys(conditions or ())
        }
        for index, (prediction, reference) in enumerate(zip(predictions, references)):
            prediction = torch.as_tensor(np.asarray(prediction, dtype=np.int64))[None]
            reference = torch.as_tensor(np.asarray(reference, dtype=np.int64))[None]
            if prediction.shape != reference.shape:
                raise ValueError(
                    f"image {index}: prediction {tuple(prediction.shape[1:])} and reference "
                    f"{tuple(reference.shape[1:])} differ in size"
                )
            overall.update(prediction, reference)
            if conditions is not None:
                groups[conditions[index]].update(prediction, reference)
        result = _result(overall, nan_to_num)
        if conditions is not None:
            result["per_condition"] = {name: _result(metric, nan_to_num) for name, metric in groups.items()}
        return result
