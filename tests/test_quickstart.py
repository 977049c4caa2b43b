"""`ivgf quickstart`: a smoke run with a handful of steps on tiny images, and the comparison table."""

import json
import math

import pytest
from PIL import Image

from ivgf_hf.cli import main
from ivgf_hf.data import M3FD_CLASSES, MFNET_CLASSES
from ivgf_hf.modeling import IVGFForObjectDetection, IVGFForSemanticSegmentation
from ivgf_hf.quickstart import OUTPUT_ENTRIES, comparison_markdown, comparison_rows, prepare_output_dir


def _tiny_quickstart(out, steps, size, task=None, extra=()):
    """``ivgf quickstart`` arguments for a tiny run: 4 training / 2 test pairs of ``size`` (height, width)."""
    task_args = ["--task", task] if task else []
    return [
        "quickstart",
        *task_args,
        "--out",
        str(out),
        *extra,
        "--steps",
        steps,
        "--num-train",
        "4",
        "--num-test",
        "2",
        "--height",
        str(size[0]),
        "--width",
        str(size[1]),
        "--num-predictions",
        "2",
        "--no-export-check",
    ]


def test_quickstart_smoke_run_writes_model_metrics_and_overlays(tmp_path, capsys):
    out = tmp_path / "quickstart"
    argv = _tiny_quickstart(out, steps="2", size=(64, 96))
    assert main(argv) == 0

    model = IVGFForSemanticSegmentation.from_pretrained(out / "model")
    assert [model.config.id2label[i] for i in range(9)] == list(MFNET_CLASSES)
    assert json.loads((out / "runs" / "ivgf" / "recipe.json").read_text())["max_steps"] == 2

    result = json.loads((out / "eval" / "metrics.json").read_text())
    assert set(result["results"]) == {"none", "visible_missing", "infrared_missing"}
    assert set(result["results"]["none"]) == {"all", "day", "night"}
    assert result["num_samples"] == 2
    for name in ("per_class_iou.png", "confusion_matrix.png"):
        with Image.open(out / "eval" / name) as image:
            assert image.format == "PNG"
    predictions = sorted(p.name for p in (out / "predictions").iterdir())
    assert len(predictions) == 4 and sum(name.endswith("_overlay.png") for name in predictions) == 2
    assert {name[5] for name in predictions} == {"D", "N"}  # one day and one night test image

    printed = capsys.readouterr().out
    assert "| Missing modality | all (n=2) | day (n=1) | night (n=1) |" in printed
    assert "| Missing modality |" in (out / "summary.md").read_text()

    with pytest.raises(SystemExit, match="not empty.*--overwrite"):
        main(argv)


def test_overwrite_deletes_only_quickstart_entries(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "summary.md").write_text("old")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        prepare_output_dir(tmp_path, overwrite=False)
    prepare_output_dir(tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert "notes.txt" not in OUTPUT_ENTRIES


def _result(miou, miou_night, person_night, bump):
    night = {"mIoU": miou_night, "per_class_iou": {"person": person_night}}
    return {
        "results": {
            "none": {"all": {"mIoU": miou, "per_class_iou": {"bump": bump}}, "day": {"mIoU": 0.5}, "night": night}
        }
    }


def test_comparison_table():
    evaluated = {
        "ivgf": {"result": _result(0.6, 0.55, 0.7, 0.4), "seconds": 300.0, "steps": 800},
        "infrared_only": {"result": _result(0.4, 0.45, 0.65, 0.0), "seconds": 150.0, "steps": 800},
    }
    rows = comparison_rows(evaluated)
    assert [row["variant"] for row in rows] == ["ivgf", "infrared_only"]
    assert rows[1]["per_class_iou"]["all"]["bump"] == 0.0 and rows[0]["per_class_iou"]["night"]["person"] == 0.7
    assert rows[0]["per_class_iou"]["day"] == {}
    lines = comparison_markdown(rows).splitlines()
    assert lines[0] == "| Model | mIoU | mIoU day | mIoU night | person IoU night | bump IoU | train time |"
    assert lines[2] == "| IVGF (FEM + TEM + AGF) | 60.0 | 50.0 | 55.0 | 70.0 | 40.0 | 5.0 min |"
    assert lines[3] == "| Infrared only | 40.0 | 50.0 | 45.0 | 65.0 | 0.0 | 2.5 min |"


@pytest.mark.slow
def test_compare_over_seeds_writes_the_mean_std_table(tmp_path):
    out = tmp_path / "quickstart"
    argv = _tiny_quickstart(out, steps="1", size=(64, 96), extra=["--compare", "--seeds", "2"])
    assert main(argv) == 0
    seeds = json.loads((out / "seeds.json").read_text())
    table = seeds["summary"]["scratch"]
    assert set(table) == {"ivgf", "sum", "visible_only", "infrared_only"}
    assert set(table["ivgf"]["mIoU_all"]["seeds"]) == {"0", "1"}
    assert (out / "runs" / "sum_fusion-seed1" / "recipe.json").exists()
    assert json.loads((out / "runs" / "ivgf-seed1" / "recipe.json").read_text())["seed"] == 1
    assert "### Over 2 training seeds" in (out / "summary.md").read_text()
    assert (out / "data" / "impairments.json").exists()  # the realistic world is the default


def test_detection_quickstart_writes_the_detector_metrics_and_box_pictures(tmp_path, capsys):
    out = tmp_path / "quickstart"
    argv = _tiny_quickstart(out, steps="2", size=(96, 128), task="detection")
    assert main(argv) == 0

    model = IVGFForObjectDetection.from_pretrained(out / "model")
    assert [model.config.id2label[i] for i in range(6)] == list(M3FD_CLASSES)
    recipe = json.loads((out / "runs" / "ivgf" / "recipe.json").read_text())
    assert recipe["name"] == "synth-det-cpu" and recipe["max_steps"] == 2
    # The model folder's processor evaluates at the recipe's eval_size, the scale the detector was trained at.
    processor = json.loads((out / "model" / "preprocessor_config.json").read_text())
    assert processor["size"]["longest_edge"] == recipe["eval_size"] == 160

    result = json.loads((out / "eval" / "metrics.json").read_text())
    assert result["task"] == "detection"
    assert set(result["results"]) == {"none", "visible_missing", "infrared_missing"}
    assert set(result["results"]["none"]) == {"all", "day", "night"}
    assert {"mAP", "mAP50", "per_class_AP"} <= set(result["results"]["none"]["night"])
    with Image.open(out / "eval" / "per_class_ap.png") as image:
        assert image.format == "PNG"
    day = set((out / "data" / "meta" / "day.txt").read_text().split())
    predictions = sorted(p.name for p in (out / "predictions").iterdir())
    assert len(predictions) == 2 and all(name.endswith("_boxes.png") for name in predictions)
    assert len({name.split("_")[0] in day for name in predictions}) == 2  # one day and one night test image

    printed = capsys.readouterr().out
    assert "### mAP50-95 (%) by missing modality and lighting" in printed
    assert "| Missing modality | all (n=2) | day (n=1) | night (n=1) |" in printed


def test_detection_comparison_table():
    def result(map_all, map50_night, people_night):
        groups = {
            "all": {"mAP": map_all, "mAP50": 0.5, "per_class_AP": {}},
            "night": {"mAP": 0.2, "mAP50": map50_night, "per_class_AP": {"People": people_night}},
        }
        return {"results": {"none": groups}}

    rows = comparison_rows({"ivgf": {"result": result(0.4, 0.6, 0.3), "seconds": 600.0, "steps": 700}}, "detection")
    assert rows[0]["mAP_all"] == 0.4 and math.isnan(rows[0]["mAP_day"])
    lines = comparison_markdown(rows, "detection").splitlines()
    assert lines[0] == (
        "| Model | mAP50-95 | mAP50-95 day | mAP50-95 night | mAP50 | mAP50 day | mAP50 night | "
        "People AP50-95 night | train time |"
    )
    assert lines[2] == "| IVGF (FEM + TEM + AGF) | 40.0 | n/a | 20.0 | 50.0 | n/a | 60.0 | 30.0 | 10.0 min |"


@pytest.mark.slow
def test_detection_compare_over_seeds_trains_the_four_detectors(tmp_path, capsys):
    out = tmp_path / "quickstart"
    argv = _tiny_quickstart(out, steps="1", size=(96, 128), task="detection", extra=["--compare", "--seeds", "2"])
    assert main(argv) == 0
    titles = ["IVGF (FEM + TEM + AGF)", "Sum fusion (no FEM/TEM/AGF)", "Visible only", "Infrared only"]
    table = (out / "comparison.md").read_text()
    assert all(f"| {title} |" in table for title in titles) and "| mAP50-95 |" in table
    for run in ("visible_only", "infrared_only-seed1"):  # single-modality detectors never train with cutout&mix
        recipe = json.loads((out / "runs" / run / "recipe.json").read_text())
        assert recipe["cma"] is False and recipe["model_overrides"]["anchor_sizes"] == [8, 16, 32, 64, 128]
    assert json.loads((out / "runs" / "ivgf" / "recipe.json").read_text())["cma"] is True
    seeds = json.loads((out / "seeds.json").read_text())["summary"]["scratch"]
    assert set(seeds) == {"ivgf", "sum", "visible_only", "infrared_only"}
    assert set(seeds["sum"]["mAP50_night"]["seeds"]) == {"0", "1"}
    printed = capsys.readouterr().out
    assert "### Over 2 training seeds" in printed and "Every seed (scratch; seeds 0, 1 in that order):" in printed


def test_cli_help_lists_the_task(capsys):
    for command in ("quickstart", "ablate"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--task {segmentation,detection}" in capsys.readouterr().out
