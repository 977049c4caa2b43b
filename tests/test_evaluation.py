"""ivgf_hf.evaluation: metric values against hand-computed cases, Trainer hooks, and the report writers."""

import json
import math
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex
from transformers import EvalPrediction

from ivgf_hf.evaluation import (
    DetectionMetric,
    SegmentationMetric,
    SegmentationMetricGroup,
    metrics_to_markdown,
    plot_confusion_matrix,
    plot_per_class_bars,
    preprocess_logits_for_metrics,
    segmentation_compute_metrics,
    write_metrics_json,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# 4 classes, one 255 pixel (predicted as class 3, which must not count), class 3 otherwise absent.
TARGET = torch.tensor([[[0, 0, 1, 255], [1, 1, 2, 2]]])
PREDS = torch.tensor([[[0, 1, 1, 3], [1, 1, 2, 0]]])
# Valid (target, pred) pairs: (0,0) (0,1) (1,1) (1,1) (1,1) (2,2) (2,0).
HAND_CONFMAT = [[1, 1, 0, 0], [0, 3, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
HAND_IOU = [1 / (2 + 2 - 1), 3 / (3 + 4 - 3), 1 / (2 + 1 - 1)]  # class 3: 0/0 -> NaN
HAND_ACC = [1 / 2, 3 / 3, 1 / 2]


def _random_batch(generator, batch=3, classes=5, size=(6, 7), absent_class=None):
    target = torch.randint(0, classes, (batch, *size), generator=generator)
    preds = torch.randint(0, classes, (batch, *size), generator=generator)
    if absent_class is not None:
        target[target == absent_class] = 0
        preds[preds == absent_class] = 0
    target[torch.rand(target.shape, generator=generator) < 0.2] = 255
    return preds, target


# ---------------------------------------------------------------- segmentation


def test_segmentation_hand_computed_with_ignore_and_absent_class():
    metric = SegmentationMetric(4, ignore_index=255, class_names=["a", "b", "c", "d"])
    metric.update(PREDS, TARGET)
    result = metric.compute()
    assert result["confusion_matrix"] == HAND_CONFMAT
    assert list(result["per_class_iou"]) == ["a", "b", "c", "d"]
    assert [result["per_class_iou"][k] for k in "abc"] == pytest.approx(HAND_IOU)
    assert math.isnan(result["per_class_iou"]["d"])
    assert result["mIoU"] == pytest.approx(sum(HAND_IOU) / 3)  # nanmean: d excluded
    assert [result["per_class_accuracy"][k] for k in "abc"] == pytest.approx(HAND_ACC)
    assert math.isnan(result["per_class_accuracy"]["d"])
    assert result["mean_accuracy"] == pytest.approx(2 / 3)
    assert result["pixel_accuracy"] == pytest.approx(5 / 7)


def test_predicted_but_absent_class_counts_as_zero_iou():
    metric = SegmentationMetric(2)
    metric.update(torch.tensor([[0, 1]]), torch.tensor([[0, 0]]))
    result = metric.compute()
    assert result["per_class_iou"] == {"0": pytest.approx(0.5), "1": 0.0}
    assert result["mIoU"] == pytest.approx(0.25)
    assert math.isnan(result["per_class_accuracy"]["1"])  # no ground truth: accuracy undefined
    assert result["mean_accuracy"] == pytest.approx(0.5)


def test_logits_equal_class_ids():
    ids = SegmentationMetric(4)
    ids.update(PREDS, TARGET)
    logits = torch.nn.functional.one_hot(PREDS, 4).permute(0, 3, 1, 2).float() * 5 + 0.1 * torch.randn(1, 4, 2, 4)
    from_logits = SegmentationMetric(4)
    from_logits.update(logits, TARGET)
    assert from_logits.compute()["confusion_matrix"] == ids.compute()["confusion_matrix"] == HAND_CONFMAT


@pytest.mark.parametrize("absent_class", [None, 3])
def test_matches_torchmetrics_jaccard_and_accuracy(absent_class):
    generator = torch.Generator().manual_seed(1)
    ours = SegmentationMetric(5, ignore_index=255)
    jaccard = MulticlassJaccardIndex(5, ignore_index=255, average="macro")
    jaccard_per_class = MulticlassJaccardIndex(5, ignore_index=255, average="none")
    accuracy = MulticlassAccuracy(5, ignore_index=255, average="micro")
    for _ in range(3):
        preds, target = _random_batch(generator, absent_class=absent_class)
        for metric in (ours, jaccard, jaccard_per_class, accuracy):
            metric.update(preds, target)
    result = ours.compute()
    # torchmetrics' macro average also leaves out classes absent from prediction and target.
    assert result["mIoU"] == pytest.approx(float(jaccard.compute()), abs=1e-6)
    reference = jaccard_per_class.compute().tolist()
    for index, value in enumerate(result["per_class_iou"].values()):
        if index == absent_class:
            assert math.isnan(value) and reference[index] == 0.0  # torchmetrics writes 0, we write NaN
        else:
            assert value == pytest.approx(reference[index], abs=1e-6)
    assert result["pixel_accuracy"] == pytest.approx(float(accuracy.compute()), abs=1e-6)


def test_accumulates_across_batches_and_resets():
    generator = torch.Generator().manual_seed(2)
    batches = [_random_batch(generator) for _ in range(3)]
    running, one_shot = SegmentationMetric(5), SegmentationMetric(5)
    for preds, target in batches:
        running.update(preds, target)
    one_shot.update(torch.cat([p for p, _ in batches]), torch.cat([t for _, t in batches]))
    assert running.compute()["confusion_matrix"] == one_shot.compute()["confusion_matrix"]
    assert running.compute()["mIoU"] == pytest.approx(one_shot.compute()["mIoU"])
    running.reset()
    assert running.confmat.sum() == 0


@pytest.mark.parametrize(
    "preds, target, message",
    [
        (torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 4, dtype=torch.long), "upsample"),
        (torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), "3 channels"),
        (torch.zeros(1, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), "float without a class axis"),
        (torch.zeros(1, 4, 4, dtype=torch.long), torch.full((1, 4, 4), 9), r"\[9\]"),
        (torch.full((1, 4, 4), 7), torch.zeros(1, 4, 4, dtype=torch.long), r"predictions holds.*\[7\]"),
        (torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 4, 4), "integer class ids"),
        (torch.zeros(1, 4, 5, dtype=torch.long), torch.zeros(1, 4, 4, dtype=torch.long), "do not match"),
    ],
)
def test_segmentation_rejects_bad_input(preds, target, message):
    with pytest.raises(ValueError, match=message):
        SegmentationMetric(4).update(preds, target)


def test_segmentation_rejects_bad_configuration():
    with pytest.raises(ValueError, match="ignore_index=0"):
        SegmentationMetric(4, ignore_index=0)
    with pytest.raises(ValueError, match="3 entries but num_classes is 4"):
        SegmentationMetric(4, class_names=["a", "b", "c"])


def test_group_routes_samples_by_name():
    generator = torch.Generator().manual_seed(3)
    preds, target = _random_batch(generator, batch=4)
    scenes = ["day", "night", "night", "day"]
    group = SegmentationMetricGroup(["all", "day", "night"], 5)
    group.update(preds, target, "all")
    group.update(preds, target, scenes)
    results = group.compute()
    assert list(results) == ["all", "day", "night"]
    for name, rows in (("all", [0, 1, 2, 3]), ("day", [0, 3]), ("night", [1, 2])):
        alone = SegmentationMetric(5)
        alone.update(preds[rows], target[rows])
        assert results[name]["confusion_matrix"] == alone.compute()["confusion_matrix"]
    with pytest.raises(KeyError, match="dusk"):
        group.update(preds, target, "dusk")
    with pytest.raises(ValueError, match="3 group names for a batch of 4"):
        group.update(preds, target, ["day"] * 3)


# ---------------------------------------------------------------- Trainer hooks


def test_preprocess_logits_takes_first_output_and_upsamples_to_labels():
    classes = torch.tensor([[[2, 0], [1, 2]]])  # (1, 2, 2) at half resolution
    logits = torch.nn.functional.one_hot(classes, 3).permute(0, 3, 1, 2).float() * 4
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    ids = preprocess_logits_for_metrics((logits, torch.zeros(1)), labels)
    assert ids.shape == (1, 4, 4) and ids.dtype == torch.long
    expected = classes.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)  # each quadrant keeps its class
    assert torch.equal(ids, expected)


def test_compute_metrics_batched_equals_one_shot():
    generator = torch.Generator().manual_seed(4)
    batches = [_random_batch(generator) for _ in range(3)]
    names = ["road", "car", "person", "bike", "sky"]
    compute_metrics = segmentation_compute_metrics(5, ignore_index=255, class_names=names)
    outputs = [
        compute_metrics(EvalPrediction(predictions=p, label_ids=t), compute_result=i == len(batches) - 1)
        for i, (p, t) in enumerate(batches)
    ]
    assert outputs[0] == {} and outputs[1] == {}
    one_shot = SegmentationMetric(5, class_names=names)
    one_shot.update(torch.cat([p for p, _ in batches]), torch.cat([t for _, t in batches]))
    expected = one_shot.compute()
    final = outputs[-1]
    assert final["mIoU"] == pytest.approx(expected["mIoU"])
    assert final["pixel_accuracy"] == pytest.approx(expected["pixel_accuracy"])
    assert final["mean_accuracy"] == pytest.approx(expected["mean_accuracy"])
    assert {k: final[f"IoU_{k}"] for k in names} == pytest.approx(expected["per_class_iou"])
    assert all(isinstance(v, float) for v in final.values())
    # The state starts over after compute_result=True.
    p, t = batches[0]
    again = compute_metrics(EvalPrediction(predictions=p, label_ids=t), compute_result=True)
    single = SegmentationMetric(5, class_names=names)
    single.update(p, t)
    assert again["mIoU"] == pytest.approx(single.compute()["mIoU"])


def test_compute_metrics_whole_set_numpy_with_trainer_padding():
    preds = PREDS.numpy().copy()
    labels = TARGET.numpy().copy()
    padded_preds = np.concatenate([preds, np.full((1, 1, 4), -100)], axis=1)  # what nested_concat pads with
    padded_labels = np.concatenate([labels, np.full((1, 1, 4), -100)], axis=1)
    metrics = segmentation_compute_metrics(4)(EvalPrediction(predictions=(padded_preds,), label_ids=padded_labels))
    assert metrics["mIoU"] == pytest.approx(sum(HAND_IOU) / 3)
    assert math.isnan(metrics["IoU_3"])


# ---------------------------------------------------------------- detection


def _box_image(pred_boxes, scores, pred_labels, gt_boxes, gt_labels):
    pred = {
        "boxes": torch.tensor(pred_boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.tensor(pred_labels, dtype=torch.long),
    }
    target = {
        "boxes": torch.tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(gt_labels, dtype=torch.long),
    }
    return pred, target


def _detection(num_classes, images, **kwargs):
    metric = DetectionMetric(num_classes, **kwargs)
    preds, targets = zip(*images)
    metric.update(list(preds), list(targets))
    return metric.compute()


@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
def test_detection_perfect_prediction_is_one(backend):
    image = _box_image([[10, 20, 50, 80]], [0.9], [0], [[10, 20, 50, 80]], [0])
    result = _detection(1, [image], backend=backend)
    assert (result["mAP"], result["mAP50"], result["mAP75"]) == (pytest.approx(1.0),) * 3
    assert result["per_class_AP"] == {"0": pytest.approx(1.0)}
    assert result["per_class_AP50"] == {"0": pytest.approx(1.0)}


@pytest.mark.parametrize("iou", [0.62, 0.72, 0.87])
def test_detection_partial_overlap_counts_thresholds(iou):
    # GT 100x100; the prediction keeps the top iou*100 rows, so IoU = iou exactly (away from any threshold).
    image = _box_image([[0, 0, 100, 100 * iou]], [0.9], [0], [[0, 0, 100, 100]], [0])
    result = _detection(1, [image])
    passed = sum(iou >= 0.5 + 0.05 * k for k in range(10))  # COCO thresholds 0.50:0.05:0.95
    assert result["mAP50"] == pytest.approx(1.0)
    assert result["mAP75"] == pytest.approx(1.0 if iou >= 0.75 else 0.0)
    assert result["mAP"] == pytest.approx(passed / 10)


def test_detection_false_positive_ranked_first_single_gt():
    # FP (0.9) then TP (0.8): precision 1/2 at recall 1 -> interpolated precision 0.5 at all 101 recall points.
    image = _box_image([[50, 50, 60, 60], [0, 0, 10, 10]], [0.9, 0.8], [0, 0], [[0, 0, 10, 10]], [0])
    result = _detection(1, [image])
    assert result["mAP"] == pytest.approx(0.5) and result["mAP50"] == pytest.approx(0.5)


@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
def test_detection_false_positive_between_true_positives_101_point(backend):
    # Ranked: TP (0.95) -> recall 1/2, precision 1; FP (0.9) -> 1/2, 1/2; TP (0.8) -> 1, 2/3.
    # Interpolated precision (max to the right): 1 for recall <= 0.5, 2/3 above.
    # 101 recall points 0.00..1.00: 51 points (0.00..0.50) read 1, 50 points (0.51..1.00) read 2/3.
    expected = (51 * 1.0 + 50 * (2 / 3)) / 101
    image = _box_image(
        [[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]],
        [0.95, 0.9, 0.8],
        [0, 0, 0],
        [[0, 0, 10, 10], [20, 20, 30, 30]],
        [0, 0],
    )
    result = _detection(1, [image], backend=backend)
    assert result["mAP"] == pytest.approx(expected, abs=1e-6)
    assert result["mAP50"] == pytest.approx(expected, abs=1e-6)
    assert result["per_class_AP50"]["0"] == pytest.approx(expected, abs=1e-6)


def test_detection_per_class_and_class_without_ground_truth():
    names = ["person", "car", "bus", "lamp"]
    images = [
        _box_image([[0, 0, 10, 10]], [0.9], [0], [[0, 0, 10, 10]], [0]),  # person: perfect
        _box_image([[0, 0, 100, 62]], [0.8], [1], [[0, 0, 100, 100]], [1]),  # car: IoU 0.62
        _box_image([[5, 5, 9, 9]], [0.7], [2], [], []),  # bus: prediction only, no ground truth
        # lamp: a false positive ranked above the true positive -> AP 0.5 at every threshold
        _box_image([[50, 50, 60, 60], [0, 0, 10, 10]], [0.9, 0.8], [3, 3], [[0, 0, 10, 10]], [3]),
    ]
    result = _detection(5, images, class_names=names + ["truck"])
    assert result["per_class_AP"]["person"] == pytest.approx(1.0)
    assert result["per_class_AP"]["car"] == pytest.approx(0.3)
    assert result["per_class_AP"]["lamp"] == pytest.approx(0.5)
    assert math.isnan(result["per_class_AP"]["bus"]) and math.isnan(result["per_class_AP"]["truck"])
    assert [result["per_class_AP50"][k] for k in ("person", "car", "lamp")] == pytest.approx([1.0, 1.0, 0.5])
    assert math.isnan(result["per_class_AP50"]["bus"]) and math.isnan(result["per_class_AP50"]["truck"])
    assert result["mAP"] == pytest.approx((1.0 + 0.3 + 0.5) / 3)  # classes without ground truth are left out
    assert result["mAP50"] == pytest.approx((1.0 + 1.0 + 0.5) / 3)


def test_detection_backends_agree_and_ap50_is_consistent():
    generator = torch.Generator().manual_seed(5)
    images = []
    for _ in range(12):
        corner = torch.rand(4, 2, generator=generator) * 200
        gt = torch.cat([corner, corner + 20 + torch.rand(4, 2, generator=generator) * 40], dim=1)
        jitter = (torch.rand(4, 4, generator=generator) - 0.5) * 16
        pred = torch.cat([gt + jitter, gt[:2] + 30])
        pred[:, 2:] = torch.maximum(pred[:, 2:], pred[:, :2] + 1)
        gt_labels = torch.randint(0, 3, (4,), generator=generator)
        images.append(
            _box_image(
                pred.tolist(),
                torch.rand(6, generator=generator).tolist(),
                torch.cat([gt_labels, gt_labels[:2]]).tolist(),
                gt.tolist(),
                gt_labels.tolist(),
            )
        )
    coco = _detection(3, images, backend="pycocotools")
    fast = _detection(3, images, backend="faster_coco_eval")
    for key in ("mAP", "mAP50", "mAP75"):
        assert coco[key] == pytest.approx(fast[key], abs=1e-6)
    assert coco["per_class_AP"] == pytest.approx(fast["per_class_AP"], abs=1e-6, nan_ok=True)
    assert coco["per_class_AP50"] == pytest.approx(fast["per_class_AP50"], abs=1e-6, nan_ok=True)
    assert 0.0 < coco["mAP"] < coco["mAP50"] <= 1.0
    assert np.nanmean(list(coco["per_class_AP50"].values())) == pytest.approx(coco["mAP50"], abs=1e-6)
    assert np.nanmean(list(coco["per_class_AP"].values())) == pytest.approx(coco["mAP"], abs=1e-6)


def test_detection_image_without_predictions_scores_zero_and_empty_is_nan():
    image = _box_image([], [], [], [[0, 0, 10, 10]], [0])
    assert _detection(1, [image])["mAP"] == pytest.approx(0.0)
    with pytest.warns(UserWarning, match="before the ``update``"):
        empty = DetectionMetric(2).compute()
    assert math.isnan(empty["mAP"]) and all(math.isnan(v) for v in empty["per_class_AP"].values())


def test_detection_rejects_bad_input():
    metric = DetectionMetric(2)
    pred, target = _box_image([[0, 0, 10, 10]], [0.9], [0], [[0, 0, 10, 10]], [0])
    with pytest.raises(KeyError, match="class_labels"):
        metric.update([pred], [{"boxes": target["boxes"], "class_labels": target["labels"]}])
    with pytest.raises(ValueError, match=r"outside \[0, 2\): \[5\]"):
        metric.update([{**pred, "labels": torch.tensor([5])}], [target])
    with pytest.raises(ValueError, match="x2 < x1"):
        metric.update([pred], [{**target, "boxes": torch.tensor([[10.0, 0, 0, 10]])}])
    with pytest.raises(ValueError, match="1 prediction entries for 2 targets"):
        metric.update([pred], [target, target])
    with pytest.raises(ValueError, match="backend must be one of"):
        DetectionMetric(2, backend="detectron")


# ---------------------------------------------------------------- reports


def _segmentation_result():
    metric = SegmentationMetric(4, class_names=["car", "person", "bike", "curve"])
    metric.update(PREDS, TARGET)
    return metric.compute()


def test_json_is_strict_and_refuses_to_overwrite(tmp_path):
    path = tmp_path / "out" / "metrics.json"
    write_metrics_json({"all": _segmentation_result(), "tensor": torch.tensor([0.5, float("nan")])}, path)
    text = path.read_text()
    assert "NaN" not in text
    loaded = json.loads(text)
    assert loaded["all"]["per_class_iou"]["curve"] is None
    assert loaded["all"]["mIoU"] == pytest.approx(sum(HAND_IOU) / 3)
    assert loaded["tensor"] == [0.5, None]
    with pytest.raises(FileExistsError, match="metrics.json"):
        write_metrics_json({"mIoU": 0.1}, path)
    assert json.loads(path.read_text()) == loaded
    write_metrics_json({"mIoU": 0.1}, path, overwrite=True)
    assert json.loads(path.read_text()) == {"mIoU": 0.1}


def test_markdown_segmentation_single_group_and_from_json(tmp_path):
    result = _segmentation_result()
    text = metrics_to_markdown(result)
    assert "| mIoU | 52.8 |" in text
    assert "| Pixel accuracy | 71.4 |" in text
    assert "| Mean accuracy | 66.7 |" in text
    assert "| Class | IoU (%) | Accuracy (%) |" in text
    assert "| person | 75.0 | 100.0 |" in text
    assert "| curve | n/a | n/a |" in text
    path = write_metrics_json({"day": result, "night": result}, tmp_path / "m.json")
    grouped = metrics_to_markdown(json.loads(path.read_text()))
    assert "| Metric | day | night |" in grouped
    assert "| mIoU | 52.8 | 52.8 |" in grouped
    assert "| car | 33.3 | 33.3 |" in grouped
    assert "| curve | n/a | n/a |" in grouped
    with pytest.raises(ValueError, match="mapping of group name"):
        metrics_to_markdown({"loss": 1.0})


def test_markdown_detection():
    result = {
        "mAP": 0.65,
        "mAP50": 1.0,
        "mAP75": 0.5,
        "per_class_AP": {"person": 1.0, "car": 0.3, "bus": float("nan")},
        "per_class_AP50": {"person": 1.0, "car": 1.0, "bus": float("nan")},
    }
    text = metrics_to_markdown(result)
    assert "| mAP50-95 | 65.0 |" in text and "| mAP50 | 100.0 |" in text and "| mAP75 | 50.0 |" in text
    assert "| Class | AP50-95 (%) | AP50 (%) |" in text
    assert "| car | 30.0 | 100.0 |" in text
    assert "| bus | n/a | n/a |" in text


def test_plots_write_valid_pngs_and_refuse_to_overwrite(tmp_path):
    result = _segmentation_result()
    bars = plot_per_class_bars(result["per_class_iou"], tmp_path / "iou.png", title="Per-class IoU")
    names = list(result["per_class_iou"])
    matrix = plot_confusion_matrix(result["confusion_matrix"], names, tmp_path / "cm.png")  # a row of zeros
    counts = plot_confusion_matrix(result["confusion_matrix"], names, tmp_path / "cm_counts.png", normalize=False)
    for path in (bars, matrix, counts):
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(path) as image:
            image.verify()
            assert image.format == "PNG" and min(image.size) > 100
    before = bars.read_bytes()
    with pytest.raises(FileExistsError, match="iou.png"):
        plot_per_class_bars({"a": 0.5}, bars, title="again")
    assert bars.read_bytes() == before
    plot_per_class_bars({"a": 0.5}, bars, title="again", overwrite=True)
    assert bars.read_bytes() != before
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix([[1, 2, 3]], ["a"], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="3 class names for a 4-class matrix"):
        plot_confusion_matrix(result["confusion_matrix"], names[:3], tmp_path / "bad.png")


def test_package_and_report_import_without_torchmetrics_or_matplotlib(monkeypatch, tmp_path):
    import importlib

    import ivgf_hf

    monkeypatch.setattr(ivgf_hf, "evaluation", ivgf_hf.evaluation)  # restored after the re-import below
    for name in ("torchmetrics", "matplotlib"):
        monkeypatch.setitem(sys.modules, name, None)  # any import of these now raises ImportError
    for part in ("", ".segmentation", ".detection", ".report"):
        monkeypatch.delitem(sys.modules, "ivgf_hf.evaluation" + part)
    fresh = importlib.import_module("ivgf_hf.evaluation")
    assert "| mIoU | 52.8 |" in fresh.metrics_to_markdown(_segmentation_result())
    with pytest.raises(ImportError):  # matplotlib is imported only when plotting
        fresh.plot_per_class_bars({"a": 0.5}, tmp_path / "bars.png", title="t")
