"""ONNX export (ivgf_hf.onnx_export, ``ivgf export``): onnxruntime matches PyTorch at several input sizes."""

import contextlib
import io

import pytest
import torch
from torch import nn

from ivgf_hf import get_config
from ivgf_hf.cli import main
from ivgf_hf.modeling import IVGFForObjectDetection, IVGFForSemanticSegmentation, IVGFImageProcessor
from ivgf_hf.onnx_export import (
    SegmentationLogits,
    adaptive_avg_pool2d,
    example_inputs,
    export_module,
    export_onnx,
    exportable_pooling,
    onnx_parity,
)

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def saved_segmentation(tmp_path_factory):
    """A tiny segmentation model folder (model + processor) with non-zero logits."""
    folder = tmp_path_factory.mktemp("seg") / "model"
    torch.manual_seed(0)
    model = IVGFForSemanticSegmentation(get_config("tiny", num_labels=9))
    with torch.no_grad():  # the classifier starts near zero: make the logits large enough for the check to bite
        model.decode_head.classifier.weight.mul_(50)
    model.save_pretrained(folder)
    IVGFImageProcessor().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def exported(saved_segmentation, tmp_path_factory):
    """``ivgf export`` of the saved model (one export, 1-2 min on 2 cores): (onnx path, exit status, printed text)."""
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        status = main(
            [
                "export",
                "--format",
                "onnx",
                "--model",
                str(saved_segmentation),
                "--out",
                str(out),
                "--check-sizes",
                "64x64,96x128,160x96",
                "--check-batch-size",
                "2",
            ]
        )
    return out, status, text.getvalue()


@pytest.mark.slow
def test_cli_exports_and_reports_parity_at_several_sizes(exported):
    path, status, text = exported
    assert status == 0, text
    assert path.is_file()
    assert "opset 18" in text
    for size in ("2 x 64 x 64", "2 x 96 x 128", "2 x 160 x 96"):
        assert size in text
    assert "parity ok" in text


@pytest.mark.slow
def test_onnxruntime_matches_pytorch_within_1e_3_with_dynamic_batch_and_size(exported, saved_segmentation):
    from ivgf_hf.inference import load_model_and_processor

    model, _ = load_model_and_processor(saved_segmentation)
    rows = onnx_parity(model, exported[0], sizes=((64, 64), (128, 96)), batch_size=3)
    assert [row["outputs"]["logits"] for row in rows] == [(3, 9, 64, 64), (3, 9, 128, 96)]
    with torch.no_grad():
        scale = SegmentationLogits(model)(*example_inputs(model.config, 1, 64, 64)).abs().max()
    assert scale > 0.1  # the comparison is not between two near-zero tensors
    assert all(row["max_abs_diff"] < 1e-3 for row in rows), rows


@pytest.mark.slow
def test_cli_refuses_to_overwrite(exported, saved_segmentation):
    with pytest.raises(SystemExit, match="already exists; pass --overwrite"):
        main(["export", "--model", str(saved_segmentation), "--out", str(exported[0])])


def test_cli_names_a_missing_model(tmp_path):
    with pytest.raises(SystemExit, match="cannot load the model"):
        main(["export", "--model", str(tmp_path / "absent"), "--out", str(tmp_path / "m.onnx")])


@pytest.mark.parametrize("size", [(96, 96), (64, 96), (100, 128)])
def test_example_size_must_be_non_square_multiples_of_32_from_96(size, tmp_path):
    model = IVGFForSemanticSegmentation(get_config("tiny", num_labels=3))
    with pytest.raises(ValueError, match="non-square"):
        export_onnx(model, tmp_path / "m.onnx", example_size=size)


def test_export_module_rejects_a_part_the_task_lacks():
    model = IVGFForSemanticSegmentation(get_config("tiny", num_labels=3))
    module, part, names = export_module(model)
    assert (type(module), part, names) == (SegmentationLogits, "logits", ["logits"])
    assert not module.training
    with pytest.raises(ValueError, match="cannot export part 'features' of a segmentation model"):
        export_module(model, "features")
    detector = IVGFForObjectDetection(get_config("tiny", num_labels=2))
    assert export_module(detector)[1:] == ("detections", ["boxes", "scores", "labels"])
    assert export_module(detector, "features")[1:] == ("features", ["p2", "p3", "p4", "p5", "pool"])


@pytest.mark.parametrize("size, bins", [((1, 1), 6), ((2, 3), 3), ((7, 5), (3, 2)), ((9, 13), 6), ((5, 4), (None, 2))])
def test_adaptive_avg_pool2d_matches_torch(size, bins):
    x = torch.randn(2, 3, *size)
    expected = nn.AdaptiveAvgPool2d(bins)(x)
    torch.testing.assert_close(adaptive_avg_pool2d(x, bins), expected, rtol=1e-5, atol=1e-6)


def test_exportable_pooling_swaps_and_restores_the_pools():
    model = IVGFForSemanticSegmentation(get_config("tiny", num_labels=3)).eval()
    pools = [m for m in model.modules() if type(m) is nn.AdaptiveAvgPool2d]
    assert pools  # UperNet's pyramid pooling
    inputs = example_inputs(model.config, 1, 96, 128)
    with torch.no_grad():
        expected = model(*inputs).logits
        with exportable_pooling(model):
            assert all("forward" in vars(pool) for pool in pools)
            swapped = model(*inputs).logits
    assert all("forward" not in vars(pool) for pool in pools)
    torch.testing.assert_close(swapped, expected, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def saved_detection(tmp_path_factory):
    folder = tmp_path_factory.mktemp("det") / "model"
    torch.manual_seed(0)
    IVGFForObjectDetection(get_config("tiny", num_labels=3)).save_pretrained(folder)
    return folder


def test_detector_exports_whole_at_a_fixed_size_with_matching_boxes_and_scores(saved_detection, tmp_path, capsys):
    out = tmp_path / "detector.onnx"
    status = main(["export", "--model", str(saved_detection), "--out", str(out), "--example-size", "96x128"])
    text = capsys.readouterr().out
    assert status == 0, text
    assert "part 'detections'" in text and "outputs boxes, scores, labels" in text
    assert "| 1 x 96 x 128 | boxes (" in text

    from ivgf_hf.inference import load_model_and_processor

    model, _ = load_model_and_processor(saved_detection)
    (row,) = onnx_parity(model, out, sizes=[(96, 128)], part="detections")
    assert row["outputs"]["boxes"][0] > 0  # random weights still give detections: the comparison is not empty
    assert row["max_abs_diff"] < 1e-3, row


@pytest.mark.slow
def test_detection_features_export_with_dynamic_sizes(saved_detection, tmp_path):
    from ivgf_hf.inference import load_model_and_processor

    model, _ = load_model_and_processor(saved_detection)
    result = export_onnx(model, tmp_path / "features.onnx", part="features")
    assert result.output_names == ["p2", "p3", "p4", "p5", "pool"]
    rows = onnx_parity(model, result.path, sizes=((64, 64), (96, 128)), part="features")
    assert rows[1]["outputs"]["p2"] == (1, 32, 24, 32)
    assert all(row["max_abs_diff"] < 1e-3 for row in rows), rows
