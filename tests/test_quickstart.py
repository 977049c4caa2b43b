"""`ivgf quickstart`: a smoke run with a handful of steps on tiny images, and the comparison table."""

import json

import pytest
from PIL import Image

from ivgf_hf.cli import main
from ivgf_hf.data import MFNET_CLASSES
from ivgf_hf.modeling import IVGFForSemanticSegmentation
from ivgf_hf.quickstart import OUTPUT_ENTRIES, comparison_markdown, comparison_rows, prepare_output_dir


def test_quickstart_smoke_run_writes_model_metrics_and_overlays(tmp_path, capsys):
    out = tmp_path / "quickstart"
    argv = ["quickstart", "--out", str(out), "--steps", "2", "--num-train", "4", "--num-test", "2", "--height", "64",
            "--width", "96", "--num-predictions", "2", "--no-export-check"]
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
    return {"results": {"none": {"all": {"mIoU": miou, "per_class_iou": {"bump": bump}}, "day": {"mIoU": 0.5},
                                 "night": night}}}


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
    argv = ["quickstart", "--out", str(out), "--compare", "--seeds", "2", "--steps", "1", "--num-train", "4",
            "--num-test", "2", "--height", "64", "--width", "96", "--num-predictions", "2", "--no-export-check"]
    assert main(argv) == 0
    seeds = json.loads((out / "seeds.json").read_text())
    table = seeds["summary"]["scratch"]
    assert set(table) == {"ivgf", "sum", "visible_only", "infrared_only"}
    assert set(table["ivgf"]["mIoU_all"]["seeds"]) == {"0", "1"}
    assert (out / "runs" / "sum_fusion-seed1" / "recipe.json").exists()
    assert json.loads((out / "runs" / "ivgf-seed1" / "recipe.json").read_text())["seed"] == 1
    assert "### Over 2 training seeds" in (out / "summary.md").read_text()
    assert (out / "data" / "impairments.json").exists()  # the realistic world is the default
