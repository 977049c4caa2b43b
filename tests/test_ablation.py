"""The ablation runner: seeds x rows x regimes, resumable cells, mean +- std tables, the pretrained regime's
encoders going through the original-checkpoint path."""

import json
import math

import pytest

from ivgf_hf.ablation import ROWS, ablation_markdown, run_ablation, summarize_cells
from ivgf_hf.cli import main
from ivgf_hf.conversion import load_checkpoint_file


def _cell(row, seed, miou, night=0.5, person=0.7, regime="scratch"):
    metrics = {
        "all": {"mIoU": miou, "per_class_iou": {}},
        "day": {"mIoU": miou, "per_class_iou": {}},
        "night": {"mIoU": night, "per_class_iou": {"person": person}},
    }
    return {"regime": regime, "row": row, "seed": seed, "steps": 10, "train_seconds": 60.0, "metrics": metrics}


def test_summary_reports_mean_sample_std_and_every_seed():
    cells = [
        _cell("ivgf", 0, 0.40),
        _cell("ivgf", 1, 0.50),
        _cell("ivgf", 2, 0.60),
        _cell("sum", 0, 0.45),
        _cell("visible_only", 0, 0.2),
        _cell("ivgf", 0, 0.9, regime="pretrained"),
    ]
    summary = summarize_cells(
        cells, ["ivgf", "sum", "visible_only"], ["scratch", "pretrained"], highlights=[("person", "night")]
    )
    ivgf = summary["scratch"]["ivgf"]["mIoU_all"]
    assert ivgf["mean"] == pytest.approx(0.5) and ivgf["std"] == pytest.approx(0.1)
    assert ivgf["seeds"] == {0: 0.40, 1: 0.50, 2: 0.60}
    assert summary["scratch"]["sum"]["mIoU_all"]["std"] == 0.0
    assert summary["scratch"]["ivgf"]["person_night"]["mean"] == pytest.approx(0.7)
    # The pretrained regime's single-modality row is the scratch one (its pretraining model).
    assert summary["pretrained"]["visible_only"]["mIoU_all"]["mean"] == pytest.approx(0.2)
    assert summary["pretrained"]["ivgf"]["mIoU_all"]["seeds"] == {0: 0.9}
    assert "sum" not in summary["pretrained"]
    lines = ablation_markdown(summary, [("person", "night")]).splitlines()
    assert lines[0] == "### Regime: scratch (3 seeds: 0, 1, 2)"
    expected = "| IVGF (FEM + TEM + AGF) | 50.0 ± 10.0 | 50.0 ± 10.0 | 50.0 ± 0.0 | 70.0 ± 0.0 | 40.0 / 50.0 / 60.0 |"
    assert lines[4] == expected + " 1.0 min |"


def test_missing_values_are_not_averaged():
    cells = [_cell("sum", 0, math.nan), _cell("sum", 1, 0.3)]
    stat = summarize_cells(cells, ["sum"], ["scratch"])["scratch"]["sum"]["mIoU_all"]
    assert stat["mean"] == pytest.approx(0.3) and stat["std"] == 0.0


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown ablation rows \\['nope'\\]"):
        run_ablation(tmp_path, rows=["nope"])
    with pytest.raises(ValueError, match="unknown regimes"):
        run_ablation(tmp_path, regimes=["warm"])
    with pytest.raises(ValueError, match="distinct"):
        run_ablation(tmp_path, seeds=[1, 1])


@pytest.mark.slow
def test_both_regimes_end_to_end_and_resume(tmp_path):
    out = tmp_path / "ablation"
    settings = dict(
        rows=["ivgf", "visible_only", "infrared_only"],
        seeds=[1],
        regimes=["scratch", "pretrained"],
        steps=2,
        num_train=4,
        num_test=2,
        height=64,
        width=96,
        log=lambda line: None,
    )
    result = run_ablation(out, **settings)
    names = sorted(p.stem for p in (out / "cells").iterdir())
    assert names == [
        "pretrained-ivgf-seed1",
        "scratch-infrared_only-seed1",
        "scratch-ivgf-seed1",
        "scratch-visible_only-seed1",
    ]
    # The pretrained cell loaded the single-modality models' encoders, written in the original layout.
    encoder = load_checkpoint_file(out / "encoders" / "seed1" / "infrared_encoder.pth")["model"]
    assert {"fpn.0.weight", "blocks3.0.gamma_1", "patch_embed1.proj.weight"} <= set(encoder)
    assert not any(key.startswith("stage4.") or "layer_scale" in key for key in encoder)
    recipe = json.loads((out / "runs" / "pretrained-ivgf-seed1" / "recipe.json").read_text())
    assert recipe["infrared_checkpoint"].endswith("seed1/infrared_encoder.pth")
    assert recipe["max_steps"] == 2 and recipe["seed"] == 1
    assert set(result["summary"]) == {"scratch", "pretrained"}
    assert set(result["summary"]["pretrained"]) == {"ivgf", "visible_only", "infrared_only"}
    cell = json.loads((out / "cells" / "scratch-ivgf-seed1.json").read_text())
    impairments = json.loads((out / "data" / "impairments.json").read_text())["images"]
    assert sum(group["count"] for group in cell["by_impairment"].values()) >= 2  # every test image in some group
    assert set(cell["by_impairment"]) <= {"clean", *{k for v in impairments.values() for k in v["impairments"]}}
    for name in ("ablation.json", "ablation.md", "ablation.png"):
        assert (out / name).stat().st_size > 0
    # A second call reuses every finished cell and can add rows; other data settings are refused.
    stamp = (out / "cells" / "scratch-ivgf-seed1.json").stat().st_mtime_ns
    result = run_ablation(out, **{**settings, "rows": ["ivgf", "sum"], "regimes": ["scratch"]})
    assert (out / "cells" / "scratch-ivgf-seed1.json").stat().st_mtime_ns == stamp
    assert set(result["summary"]["scratch"]) == {"ivgf", "sum"}
    with pytest.raises(FileExistsError, match="other data"):
        run_ablation(out, **{**settings, "num_train": 6})


def test_cli_lists_every_row(capsys):
    with pytest.raises(SystemExit):
        main(["ablate", "--help"])
    printed = capsys.readouterr().out
    assert all(row in printed for row in ROWS)


def _detection_cell(row, seed, map_all, map50_night):
    group = {"mAP": map_all, "mAP50": 0.5, "per_class_AP": {"People": 0.25}}
    metrics = {"all": group, "day": group, "night": {**group, "mAP50": map50_night}}
    return {"regime": "scratch", "row": row, "seed": seed, "steps": 10, "train_seconds": 120.0, "metrics": metrics}


def test_detection_summary_reports_map_and_every_seed():
    cells = [_detection_cell("ivgf", 0, 0.30, 0.6), _detection_cell("ivgf", 1, 0.40, 0.8)]
    summary = summarize_cells(cells, ["ivgf"], ["scratch"], [("People", "night")], task="detection")
    entry = summary["scratch"]["ivgf"]
    assert entry["mAP_all"]["mean"] == pytest.approx(0.35) and entry["mAP50_night"]["seeds"] == {0: 0.6, 1: 0.8}
    assert entry["People_night"]["mean"] == pytest.approx(0.25)
    lines = ablation_markdown(summary, [("People", "night")], task="detection").splitlines()
    assert lines[2] == (
        "| Model | mAP50-95 | mAP50-95 day | mAP50-95 night | mAP50 | mAP50 day | mAP50 night | "
        "People AP50-95 night | train time |"
    )
    assert lines[4].startswith("| IVGF (FEM + TEM + AGF) | 35.0 ± 7.1 | 35.0 ± 7.1 | 35.0 ± 7.1 | 50.0 ± 0.0 |")
    assert (
        "| IVGF (FEM + TEM + AGF) | 30.0 / 40.0 | 30.0 / 40.0 | 30.0 / 40.0 | 50.0 / 50.0 | 50.0 / 50.0 | 60.0 / 80.0 |"
        in lines
    )
    with pytest.raises(ValueError, match="task must be one of segmentation, detection, got 'depth'"):
        summarize_cells(cells, ["ivgf"], ["scratch"], task="depth")


@pytest.mark.slow
def test_detection_ablation_writes_task_named_cells_and_map_table(tmp_path):
    out = tmp_path / "ablation"
    settings = dict(
        task="detection",
        rows=["ivgf", "visible_only"],
        seeds=[0],
        steps=1,
        num_train=4,
        num_test=2,
        height=96,
        width=128,
        log=lambda line: None,
    )
    result = run_ablation(out, **settings)
    assert sorted(p.name for p in (out / "cells").iterdir()) == [
        "detection-scratch-ivgf-seed0.json",
        "detection-scratch-visible_only-seed0.json",
    ]
    cell = json.loads((out / "cells" / "detection-scratch-ivgf-seed0.json").read_text())
    assert set(cell["metrics"]) == {"all", "day", "night"} and {"mAP", "mAP50"} <= set(cell["metrics"]["night"])
    recipe = json.loads((out / "runs" / "detection-scratch-visible_only-seed0" / "recipe.json").read_text())
    assert recipe["name"] == "synth-det-cpu" and recipe["cma"] is False
    assert recipe["model_overrides"]["modalities"] == "visible" and "anchor_sizes" in recipe["model_overrides"]
    assert (out / "data" / "Annotation").is_dir()
    markdown = (out / "ablation.md").read_text()
    assert "| Model | mAP50-95 | mAP50-95 day | mAP50-95 night | mAP50 | mAP50 day | mAP50 night |" in markdown
    assert result["markdown"] == markdown and (out / "ablation.png").stat().st_size > 0
    # One folder holds one task's data: a segmentation ablation there is refused.
    with pytest.raises(FileExistsError, match="other data"):
        run_ablation(out, **{**settings, "task": "segmentation"})
