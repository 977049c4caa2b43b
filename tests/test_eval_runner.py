"""The evaluation runner: hand-computed metrics through evaluate_model, the missing-modality protocols, sliding
windows and test-time augmentation, sharding across processes, and the `ivgf eval` command's files."""

import contextlib
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ivgf_hf import get_config
from ivgf_hf.cli import main
from ivgf_hf.data import MFNET_CLASSES, generate_synthrgbt, id2label
from ivgf_hf.evaluation.runner import evaluate_model, results_to_markdown
from ivgf_hf.inference import (
    apply_protocol,
    segmentation_probabilities,
    sliding_window_logits,
    window_starts,
)
from ivgf_hf.modeling import IVGFForSemanticSegmentation, IVGFImageProcessor
from ivgf_hf.modeling.modeling_ivgf import LUMA_WEIGHTS

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
IR_MEAN, IR_STD = 0.425, 0.200


def stub_config(num_labels=3):
    return SimpleNamespace(
        id2label={i: f"class{i}" for i in range(num_labels)},
        num_labels=num_labels,
        num_channels_ir=1,
        patch_sizes=[4, 2, 2],
        modalities="both",
    )


class StubForSemanticSegmentation(torch.nn.Module):
    """Predicts class = raw visible red // 100 (read back from the normalised input) and records its inputs."""

    def __init__(self, num_labels=3):
        super().__init__()
        self.config = stub_config(num_labels)
        self.anchor = torch.nn.Parameter(torch.zeros(()))
        self.calls = []

    def forward(self, pixel_values, pixel_values_ir, return_dict=True):
        self.calls.append((pixel_values.clone(), pixel_values_ir.clone()))
        red = (pixel_values[:, 0] * STD[0, 0] + MEAN[0, 0]) * 255
        classes = torch.div(red.round(), 100, rounding_mode="floor").long().clamp(0, self.config.num_labels - 1)
        return SimpleNamespace(logits=F.one_hot(classes, self.config.num_labels).permute(0, 3, 1, 2).float())


class PointwiseForSemanticSegmentation(torch.nn.Module):
    """A 1x1-convolution "model": its logits at a pixel depend on that pixel only (translation / flip equivariant)."""

    def __init__(self):
        super().__init__()
        self.config = stub_config(3)
        self.head = torch.nn.Conv2d(4, 3, 1)
        self.shapes = []
        self.inputs = []

    def forward(self, pixel_values, pixel_values_ir, return_dict=True):
        self.shapes.append(tuple(pixel_values.shape[-2:]))
        self.inputs.append(pixel_values.clone())
        return SimpleNamespace(logits=self.head(torch.cat([pixel_values, pixel_values_ir], 1)))


def rgb(red, green=10, blue=50):
    red = np.asarray(red, dtype=np.uint8)
    return Image.fromarray(np.stack([red, np.full_like(red, green), np.full_like(red, blue)], -1))


def grey(values):
    return Image.fromarray(np.asarray(values, dtype=np.uint8))


# Two 2x3 pairs. The stub predicts from the visible red channel: 0 -> class 0, 100 -> 1, 200 -> 2.
SAMPLES = [
    {  # day: predictions [[0, 0, 1], [1, 2, 2]]
        "visible": rgb([[0, 0, 100], [100, 200, 200]]),
        "infrared": grey([[200] * 3] * 2),
        "label": grey([[0, 1, 1], [1, 2, 255]]),
        "condition": "day",
    },
    {  # night: predictions [[2, 2, 2], [0, 0, 0]]
        "visible": rgb([[200, 200, 200], [0, 0, 0]]),
        "infrared": grey([[0] * 3] * 2),
        "label": grey([[2, 2, 0], [0, 0, 1]]),
        "condition": "night",
    },
]


def test_segmentation_metrics_equal_hand_computed_values():
    result = evaluate_model(
        StubForSemanticSegmentation(), SAMPLES, task="segmentation", protocols=("none", "visible_missing")
    )
    # Confusion over both images (rows ground truth, columns prediction; the 255 pixel ignored):
    # [[3, 0, 1], [2, 2, 0], [0, 0, 3]] -> IoU 3/6, 2/4, 3/4.
    overall = result["results"]["none"]["all"]
    assert overall["confusion_matrix"] == [[3, 0, 1], [2, 2, 0], [0, 0, 3]]
    assert overall["per_class_iou"] == pytest.approx({"class0": 0.5, "class1": 0.5, "class2": 0.75})
    assert overall["mIoU"] == pytest.approx((0.5 + 0.5 + 0.75) / 3)
    assert overall["pixel_accuracy"] == pytest.approx(8 / 11)
    # Day only: [[1, 0, 0], [1, 2, 0], [0, 0, 1]]; night only: [[2, 0, 1], [1, 0, 0], [0, 0, 2]].
    assert result["results"]["none"]["day"]["mIoU"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert result["results"]["none"]["night"]["mIoU"] == pytest.approx((1 / 2 + 0 + 2 / 3) / 3)
    assert result["results"]["none"]["night"]["pixel_accuracy"] == pytest.approx(4 / 6)
    # Visible missing: the stub sees the infrared image (day all 200 -> class 2, night all 0 -> class 0):
    # [[3, 0, 1], [1, 0, 3], [2, 0, 1]] -> IoU 3/7, 0, 1/7.
    assert result["results"]["visible_missing"]["all"]["mIoU"] == pytest.approx((3 / 7 + 0 + 1 / 7) / 3)

    assert result["task"] == "segmentation" and result["num_samples"] == 2
    assert result["metrics"] == overall
    assert result["class_names"] == ["class0", "class1", "class2"]
    assert result["settings"]["groups"] == ["all", "day", "night"]
    assert result["settings"]["group_sizes"] == {"all": 2, "day": 1, "night": 1}


def test_protocols_give_the_model_the_other_modality_before_normalisation():
    model = StubForSemanticSegmentation()
    evaluate_model(model, SAMPLES, task="segmentation", protocols=("none", "visible_missing", "infrared_missing"))
    assert len(model.calls) == 3  # one batch of two pairs, one forward per protocol
    raw = [((v * STD + MEAN) * 255, (i * IR_STD + IR_MEAN) * 255) for v, i in model.calls]
    visible = torch.stack([torch.tensor(np.array(s["visible"])).permute(2, 0, 1).float() for s in SAMPLES])
    infrared = torch.stack([torch.tensor(np.array(s["infrared"]))[None].float() for s in SAMPLES])
    region = (..., slice(0, 2), slice(0, 3))  # the processor pads to 32 x 32

    none_visible, none_infrared = raw[0]
    torch.testing.assert_close(none_visible[region], visible, atol=1e-3, rtol=0)
    torch.testing.assert_close(none_infrared[region], infrared, atol=1e-3, rtol=0)

    missing_visible, missing_visible_ir = raw[1]  # visible := infrared, repeated to 3 channels
    torch.testing.assert_close(missing_visible[region], infrared.expand(-1, 3, -1, -1), atol=1e-3, rtol=0)
    torch.testing.assert_close(missing_visible_ir[region], infrared, atol=1e-3, rtol=0)

    missing_ir_visible, missing_ir = raw[2]  # infrared := the visible image's BT.601 luma, rounded to 8 bits
    torch.testing.assert_close(missing_ir_visible[region], visible, atol=1e-3, rtol=0)
    expected = (visible * torch.tensor(LUMA_WEIGHTS).view(1, 3, 1, 1)).sum(dim=1, keepdim=True).round()
    torch.testing.assert_close(missing_ir[region], expected, atol=1e-3, rtol=0)


def test_apply_protocol_on_raw_arrays():
    visible = np.array([[[0, 10, 50], [255, 255, 254]]], dtype=np.uint8)
    infrared = np.array([[7, 9]], dtype=np.uint8)
    same_visible, same_infrared = apply_protocol(visible, infrared, "none")
    assert same_visible is visible and same_infrared is infrared
    new_visible, kept = apply_protocol(visible, infrared, "visible_missing")
    np.testing.assert_array_equal(new_visible, [[[7, 7, 7], [9, 9, 9]]])
    assert kept is infrared
    kept, new_infrared = apply_protocol(visible, infrared, "infrared_missing")
    np.testing.assert_array_equal(new_infrared, [[12, 255]])  # BT.601: 0.587 * 10 + 0.114 * 50 = 11.57
    assert new_infrared.dtype == np.uint8 and kept is visible
    with pytest.raises(ValueError, match="protocol must be one of"):
        apply_protocol(visible, infrared, "thermal_missing")


def test_runner_rejects_bad_arguments():
    model = StubForSemanticSegmentation()
    with pytest.raises(ValueError, match="protocols must be distinct"):
        evaluate_model(model, SAMPLES, task="segmentation", protocols=("none", "rgb_missing"))
    with pytest.raises(ValueError, match="task must be one of"):
        evaluate_model(model, SAMPLES, task="depth")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['objects'\]"):
        evaluate_model(model, SAMPLES, task="detection")
    with pytest.raises(ValueError, match="segmentation only"):
        evaluate_model(model, [{"visible": 0, "infrared": 0, "objects": 0}], task="detection", tta_flip=True)


def test_max_samples_and_missing_condition_column():
    plain = [{key: value for key, value in sample.items() if key != "condition"} for sample in SAMPLES]
    result = evaluate_model(StubForSemanticSegmentation(), plain, task="segmentation", max_samples=1)
    assert result["num_samples"] == 1
    assert list(result["results"]["none"]) == ["all"]
    assert result["metrics"]["pixel_accuracy"] == pytest.approx(4 / 5)  # the day image alone


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")  # the day group is empty on process 1
def test_sharding_evaluates_every_world_size_th_sample():
    model = StubForSemanticSegmentation()
    accelerator = SimpleNamespace(
        process_index=1,
        num_processes=2,
        device=torch.device("cpu"),
        unwrap_model=lambda m: m,
        autocast=contextlib.nullcontext,
    )
    result = evaluate_model(model, SAMPLES, task="segmentation", accelerator=accelerator)
    assert [tuple(v.shape) for v, _ in model.calls] == [(1, 3, 64, 64)]  # only sample 1 on process 1 (padded to 48+)
    assert result["metrics"]["confusion_matrix"] == [[2, 0, 1], [1, 0, 0], [0, 0, 2]]  # not yet summed
    assert result["settings"]["num_processes"] == 2


def _distributed_worker(rank, world, init_file, out_file):
    torch.set_num_threads(1)  # a forked child must not reuse the parent's OpenMP pool
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = evaluate_model(StubForSemanticSegmentation(), SAMPLES, task="segmentation")
        with open(f"{out_file}.{rank}", "w") as handle:
            json.dump(result["results"]["none"]["all"]["confusion_matrix"], handle)
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_sum_their_shards(tmp_path):
    out_file = tmp_path / "confusion"
    torch.multiprocessing.start_processes(  # fork: the children reuse the imported modules (spawn re-imports them)
        _distributed_worker, args=(2, str(tmp_path / "init"), str(out_file)), nprocs=2, start_method="fork"
    )
    for rank in range(2):
        assert json.loads((tmp_path / f"confusion.{rank}").read_text()) == [[3, 0, 1], [2, 2, 0], [0, 0, 3]]


class StubForObjectDetection(torch.nn.Module):
    """Returns fixed detections (in the pixel_values frame) for every image."""

    def __init__(self, detection):
        super().__init__()
        self.config = SimpleNamespace(id2label={0: "person", 1: "car"}, num_labels=2, num_channels_ir=1)
        self.anchor = torch.nn.Parameter(torch.zeros(()))
        self.detection = detection

    def forward(self, pixel_values, pixel_values_ir, return_dict=True):
        return SimpleNamespace(detections=[dict(self.detection) for _ in range(pixel_values.shape[0])])


def test_detection_metrics_equal_hand_computed_values():
    sample = {
        "visible": rgb(np.zeros((64, 64))),
        "infrared": grey(np.zeros((64, 64))),
        "objects": {"bbox": [[10, 10, 30, 30], [40, 40, 60, 60]], "category": [0, 1]},
        "condition": "night",
    }
    detection = {  # the person exactly; the car box overlaps its ground truth with IoU 100 / 400 < 0.5
        "boxes": torch.tensor([[10.0, 10, 30, 30], [40, 40, 50, 50]]),
        "scores": torch.tensor([0.9, 0.8]),
        "labels": torch.tensor([0, 1]),
    }
    result = evaluate_model(StubForObjectDetection(detection), [sample], task="detection")
    metrics = result["metrics"]
    assert metrics["per_class_AP"] == pytest.approx({"person": 1.0, "car": 0.0})
    assert metrics["mAP"] == pytest.approx(0.5) and metrics["mAP50"] == pytest.approx(0.5)
    assert list(result["results"]["none"]) == ["all", "night"]
    assert "mAP50-95" in results_to_markdown(result)


def test_window_starts_cover_the_length_flush_with_the_end():
    assert window_starts(96, 32, 24) == [0, 24, 48, 64]
    assert window_starts(64, 32, 32) == [0, 32]
    assert window_starts(64, 96, 32) == [0]


def test_sliding_window_averages_overlapping_windows_exactly():
    torch.manual_seed(0)
    model = PointwiseForSemanticSegmentation()
    visible, infrared = torch.randn(2, 3, 64, 96), torch.randn(2, 1, 64, 96)
    whole = model(visible, infrared).logits
    windowed = sliding_window_logits(model, visible, infrared, (32, 16))
    torch.testing.assert_close(windowed, whole)
    assert set(model.shapes[1:]) == {(32, 32)} and len(model.shapes) == 1 + 3 * 5
    with pytest.raises(ValueError, match="multiple of the encoder stride 16"):
        sliding_window_logits(model, visible, infrared, (40, 20))
    with pytest.raises(ValueError, match="larger than the crop"):
        sliding_window_logits(model, visible, infrared, (32, 48))


def test_sliding_window_covering_the_image_equals_whole_image_inference():
    torch.manual_seed(0)
    model = IVGFForSemanticSegmentation(get_config("tiny", num_labels=4)).eval()
    visible, infrared = torch.randn(1, 3, 64, 96), torch.randn(1, 1, 64, 96)
    with torch.inference_mode():
        whole = segmentation_probabilities(model, visible, infrared)
        windowed = segmentation_probabilities(model, visible, infrared, sliding_window=(96, 64))
        reference = model(visible, infrared).logits.softmax(dim=1)
    torch.testing.assert_close(windowed, whole, rtol=0, atol=0)
    torch.testing.assert_close(whole, reference)


def test_test_time_augmentation_views():
    torch.manual_seed(0)
    model = PointwiseForSemanticSegmentation()
    visible, infrared = torch.randn(1, 3, 64, 96), torch.randn(1, 1, 64, 96)
    plain = segmentation_probabilities(model, visible, infrared)
    model.shapes.clear()
    model.inputs.clear()
    flipped = segmentation_probabilities(model, visible, infrared, tta_flip=True, tta_scales=(0.5, 1.0))
    assert model.shapes == [(32, 64), (32, 64), (64, 96), (64, 96)]  # 0.5 x (64, 96) = (32, 48), padded to 32s
    torch.testing.assert_close(model.inputs[3], visible.flip(-1))
    torch.testing.assert_close(model.inputs[1], model.inputs[0].flip(-1))
    only_flip = segmentation_probabilities(model, visible, infrared, tta_flip=True)
    torch.testing.assert_close(only_flip, plain)  # a pointwise model is flip-equivariant
    assert flipped.shape == plain.shape
    torch.testing.assert_close(flipped.sum(dim=1), torch.ones(1, 64, 96))
    with pytest.raises(ValueError, match="tta_scales"):
        segmentation_probabilities(model, visible, infrared, tta_scales=(0.0,))


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    model = IVGFForSemanticSegmentation(get_config("tiny", id2label=id2label(MFNET_CLASSES)))
    model.save_pretrained(folder)
    IVGFImageProcessor().save_pretrained(folder)
    return folder


def test_eval_command_writes_json_markdown_and_plots(saved_model, tmp_path, capsys):
    data = generate_synthrgbt(tmp_path / "synth", "mfnet", num_train=0, num_test=4, height=64, width=96)
    out = tmp_path / "eval"
    argv = [
        "eval",
        "--model",
        str(saved_model),
        "--dataset",
        "synthrgbt",
        "--data-root",
        str(data),
        "--split",
        "test",
        "--protocols",
        "none,visible_missing,infrared_missing",
        "--out",
        str(out),
    ]
    assert main(argv) == 0

    result = json.loads((out / "metrics.json").read_text())
    assert set(result) == {"task", "num_samples", "metrics", "results", "class_names", "settings"}
    assert result["task"] == "segmentation" and result["num_samples"] == 4
    assert result["class_names"] == list(MFNET_CLASSES)
    assert set(result["results"]) == {"none", "visible_missing", "infrared_missing"}
    for groups in result["results"].values():
        assert set(groups) == {"all", "day", "night"}
        assert len(groups["all"]["per_class_iou"]) == 9 and len(groups["all"]["confusion_matrix"]) == 9
    headline = result["metrics"]
    assert {"mIoU", "pixel_accuracy", "per_class_iou", "confusion_matrix"} <= set(headline)
    assert sum(map(sum, headline["confusion_matrix"])) == 4 * 64 * 96  # every pixel of every image, none ignored
    for name in ("per_class_iou.png", "confusion_matrix.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and min(image.size) > 100
    markdown = (out / "metrics.md").read_text()
    assert "| Missing modality | all (n=4) | day (n=2) | night (n=2) |" in markdown
    for row in ("| None |", "| Visible |", "| Infrared |"):
        assert row in markdown
    assert "| Missing modality |" in capsys.readouterr().out

    with pytest.raises(SystemExit, match="metrics.json.*--overwrite"):
        main(argv)
    assert main(argv + ["--overwrite", "--max-samples", "2"]) == 0
    assert json.loads((out / "metrics.json").read_text())["num_samples"] == 2


def test_eval_command_rejects_unknown_protocol_and_split(saved_model, tmp_path):
    data = generate_synthrgbt(tmp_path / "synth", "mfnet", num_train=0, num_test=2, height=64, width=96)
    base = [
        "eval",
        "--model",
        str(saved_model),
        "--dataset",
        "synthrgbt",
        "--data-root",
        str(data),
        "--out",
        str(tmp_path / "out"),
    ]
    with pytest.raises(SystemExit, match="--protocols takes names among"):
        main(base + ["--protocols", "none,depth_missing"])
    with pytest.raises(SystemExit, match="no split file val.txt"):
        main(base + ["--split", "val"])
    assert not (tmp_path / "out" / "metrics.json").exists()
