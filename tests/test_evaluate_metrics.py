"""The ``evaluate`` modules shipped with ivgf_hf: offline loading, the Hub mean_iou interface, same numbers as ours."""

import numpy as np
import pytest
import torch

from ivgf_hf.evaluation import DetectionMetric, SegmentationMetric, load_evaluate_metric


@pytest.fixture(scope="module")
def mean_iou(tmp_path_factory):
    return load_evaluate_metric("rgbt_mean_iou", cache_dir=str(tmp_path_factory.mktemp("evaluate")))


@pytest.fixture(scope="module")
def detection_map(tmp_path_factory):
    return load_evaluate_metric("rgbt_detection_map", cache_dir=str(tmp_path_factory.mktemp("evaluate")))


def test_mean_iou_matches_a_hand_computed_case(mean_iou):
    predictions = [np.array([[0, 1], [1, 1]]), np.array([[2, 2], [0, 0]])]
    references = [np.array([[0, 1], [0, 255]]), np.array([[2, 2], [0, 1]])]
    result = mean_iou.compute(predictions=predictions, references=references, num_labels=3, ignore_index=255)
    # class 0: TP 2, 3 reference + 3 predicted pixels -> 2 / 4; class 1: TP 1, 2 + 2 (the ignored pixel does not
    # count) -> 1 / 3; class 2: 2 / 2
    assert np.allclose(result["per_category_iou"], [0.5, 1 / 3, 1.0])
    assert result["mean_iou"] == pytest.approx((0.5 + 1 / 3 + 1.0) / 3)
    assert result["overall_accuracy"] == pytest.approx(5 / 7)
    assert np.allclose(result["per_category_accuracy"], [2 / 3, 1 / 2, 1.0])


def test_mean_iou_conditions_and_nan_to_num(mean_iou):
    predictions = [np.array([[0, 1], [1, 1]]), np.array([[2, 2], [0, 0]])]
    references = [np.array([[0, 1], [0, 255]]), np.array([[2, 2], [0, 1]])]
    result = mean_iou.compute(
        predictions=predictions,
        references=references,
        num_labels=3,
        ignore_index=255,
        nan_to_num=0.0,
        conditions=["day", "night"],
    )
    day, night = result["per_condition"]["day"], result["per_condition"]["night"]
    assert np.allclose(day["per_category_iou"], [0.5, 0.5, 0.0])  # class 2 absent by day: NaN -> 0
    assert day["mean_iou"] == pytest.approx(0.5)  # the mean leaves the undefined class out
    assert np.allclose(night["per_category_iou"], [0.5, 0.0, 1.0])


def test_mean_iou_equals_segmentation_metric_and_accumulates_batches(mean_iou):
    generator = torch.Generator().manual_seed(0)
    references = torch.randint(0, 5, (6, 24, 32), generator=generator)
    references[:, :3] = 255
    predictions = torch.where(
        torch.rand(6, 24, 32, generator=generator) < 0.6,
        references % 5,
        torch.randint(0, 5, (6, 24, 32), generator=generator),
    )
    reference_metric = SegmentationMetric(5, 255)
    reference_metric.update(predictions, references)
    expected = reference_metric.compute()
    for start in (0, 3):  # the Trainer's pattern: add_batch per batch, compute at the end
        mean_iou.add_batch(
            predictions=list(predictions[start : start + 3].numpy()),
            references=list(references[start : start + 3].numpy()),
        )
    result = mean_iou.compute(num_labels=5, ignore_index=255)
    assert result["mean_iou"] == pytest.approx(expected["mIoU"])
    assert result["overall_accuracy"] == pytest.approx(expected["pixel_accuracy"])
    assert np.allclose(result["per_category_iou"], list(expected["per_class_iou"].values()), equal_nan=True)


def test_detection_map_equals_detection_metric(detection_map):
    generator = torch.Generator().manual_seed(0)
    predictions, references = [], []
    for _ in range(4):
        corners = torch.rand(5, 2, generator=generator) * 60
        boxes = torch.cat([corners, corners + 5 + torch.rand(5, 2, generator=generator) * 30], dim=1)
        labels = torch.randint(0, 3, (5,), generator=generator)
        references.append({"boxes": boxes, "labels": labels})
        jitter = boxes + torch.randn(5, 4, generator=generator) * 2
        predictions.append({"boxes": jitter, "scores": torch.rand(5, generator=generator), "labels": labels})
    metric = DetectionMetric(3)
    metric.update(predictions, references)
    expected = metric.compute()
    as_lists = lambda entries: [{k: v.tolist() for k, v in entry.items()} for entry in entries]  # noqa: E731
    result = detection_map.compute(
        predictions=as_lists(predictions),
        references=as_lists(references),
        num_labels=3,
        conditions=["day", "day", "night", "night"],
    )
    for key in ("mAP", "mAP50", "mAP75"):
        assert result[key] == pytest.approx(expected[key], abs=1e-6)
    assert result["per_class_AP"] == pytest.approx(expected["per_class_AP"], abs=1e-6)
    night = DetectionMetric(3)
    night.update(predictions[2:], references[2:])
    assert result["per_condition"]["night"]["mAP"] == pytest.approx(night.compute()["mAP"], abs=1e-6)


def test_unknown_metric_name_is_a_clear_error():
    with pytest.raises(ValueError, match="ivgf_hf ships rgbt_mean_iou, rgbt_detection_map"):
        load_evaluate_metric("mean_iou")
