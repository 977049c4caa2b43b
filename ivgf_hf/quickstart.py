"""The quickstart: SynthRGBT -> a small IVGF trained on the CPU -> evaluation with the paper's breakdowns.

:func:`run_quickstart` generates SynthRGBT in MFNet's layout, trains the ``tiny`` IVGF with the ``synth-seg-cpu``
recipe, evaluates it per missing-modality protocol (Table VI) and lighting condition, writes the model folder
(``from_pretrained``-loadable), the metrics and overlay PNGs, and returns / prints a short table. With
``compare=True`` it also trains the visible-only and infrared-only models and the sum-fusion baseline (no FEM,
TEM or AGF) on the same data, steps and seed, and compares them where SynthRGBT makes fusion matter: at night,
people are visible only in the infrared image, and bumps only in the visible one.

Output folder::

    data/                 SynthRGBT (MFNet layout: images/ labels/ train.txt test.txt test_day.txt ...)
    runs/<variant>/       training runs (recipe, logs, checkpoints, final_model/)
    model/                the IVGF model folder (config, safetensors, processor, code)
    eval/                 metrics.json, metrics.md, per_class_iou.png, confusion_matrix.png
    predictions/          <name>_mask.png and <name>_overlay.png for a few day and night test images
    comparison.md/.json   the --compare table (when asked)
    summary.md            the printed tables
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Callable, Optional

__all__ = [
    "VARIANTS",
    "OUTPUT_ENTRIES",
    "run_quickstart",
    "prepare_output_dir",
    "comparison_rows",
    "comparison_markdown",
]

# name -> (title, recipe overrides): the fused model first, then the baselines of --compare. Sum fusion differs
# from IVGF only by the fusion modules. The single-modality models train without cutout&mix: its cutmix part pastes
# patches of the other modality into the input, which a one-encoder model never sees at test time (the paper's
# single-modality references, InfMAE and MCMAE alone, have no such augmentation either).
VARIANTS = {
    "ivgf": ("IVGF (FEM + TEM + AGF)", {}),
    "sum_fusion": (
        "Sum fusion (no FEM/TEM/AGF)",
        {"model_overrides": {"use_fem": False, "use_tem": False, "use_agf": False}},
    ),
    "visible_only": ("Visible only", {"model_overrides": {"modalities": "visible"}, "cma": False}),
    "infrared_only": ("Infrared only", {"model_overrides": {"modalities": "infrared"}, "cma": False}),
}
OUTPUT_ENTRIES = (
    "data", "runs", "model", "eval", "predictions", "comparison.md", "comparison.json", "seeds.md", "seeds.json",
    "summary.md",
)
PROTOCOLS = ("none", "visible_missing", "infrared_missing")
RECIPE = "synth-seg-cpu"
# (class, lighting) cells of the comparison table where one modality is blind in SynthRGBT (see
# ivgf_hf.data.synthetic_scene): people at night are visible only in the infrared image, bumps only in the visible one.
HIGHLIGHTS = (("person", "night"), ("bump", "all"))
LIGHTINGS = ("all", "day", "night")
# Quickstart variant -> row of the ablation runner (ivgf_hf.ablation.ROWS), whose tables the seed summary uses.
_ABLATION_ROWS = {"ivgf": "ivgf", "sum_fusion": "sum", "visible_only": "visible_only", "infrared_only": "infrared_only"}


def prepare_output_dir(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty folder unless ``overwrite``; then delete only the entries the quickstart writes."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass --overwrite (overwrite=True) to replace a quickstart run")
        for name in OUTPUT_ENTRIES:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _train_variant(
    name: str, data, out: Path, steps: Optional[int], seed: int, export_check: bool, run_name: str
) -> tuple:
    """Train one variant into ``runs/<run_name>``; returns (final model folder, seconds, steps)."""
    from .training import get_recipe, train

    overrides = {"data_root": str(out / "data"), "eval_split": None, "seed": seed, "export_check": export_check,
                 **VARIANTS[name][1]}
    if steps is not None:
        overrides.update(max_steps=steps, save_every=steps, log_every=max(1, min(20, steps)))
    recipe = get_recipe(RECIPE, **overrides)
    started = time.perf_counter()
    result = train(recipe, out / "runs" / run_name, data=data)
    return Path(result.final_model), time.perf_counter() - started, recipe.max_steps


def _write_predictions(model, processor, data_root: Path, test, out_dir: Path, count: int) -> list:
    """Masks and overlays for up to ``count`` test images, half day and half night."""
    from .commands.predict import InputPair, predict_pairs

    names = list(test["name"])
    conditions = list(test["condition"])
    day = [n for n, c in zip(names, conditions) if c == "day"]
    night = [n for n, c in zip(names, conditions) if c == "night"]
    chosen = day[: count - min(len(night), count // 2)] + night[: count // 2]
    pairs = [InputPair(name, data_root / "images" / f"{name}.png", None) for name in sorted(chosen)]
    return predict_pairs(model, processor, pairs, out_dir, task="segmentation", progress=False)


def comparison_rows(results: dict) -> list:
    """One row per variant: title, mIoU and per-class IoU by lighting (fractions), training time and steps."""
    rows = []
    for name, entry in results.items():
        groups = entry["result"]["results"]["none"]
        row = {"variant": name, "title": VARIANTS[name][0]}
        for lighting in LIGHTINGS:
            row[f"mIoU_{lighting}"] = groups.get(lighting, {}).get("mIoU", math.nan)
        row["per_class_iou"] = {
            lighting: dict(groups.get(lighting, {}).get("per_class_iou", {})) for lighting in LIGHTINGS
        }
        row.update(train_seconds=entry["seconds"], steps=entry["steps"])
        rows.append(row)
    return rows


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _percent(value) -> str:
    return "n/a" if _is_missing(value) else f"{100.0 * value:.1f}"


def comparison_markdown(rows: list) -> str:
    """The comparison table (%, one decimal): mIoU by lighting and the IoU of :data:`HIGHLIGHTS`."""
    header = ["Model", "mIoU", "mIoU day", "mIoU night"]
    header += [f"{name} IoU{'' if lighting == 'all' else ' ' + lighting}" for name, lighting in HIGHLIGHTS]
    header.append("train time")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["title"]] + [_percent(row[f"mIoU_{lighting}"]) for lighting in LIGHTINGS]
        cells += [_percent(row["per_class_iou"][lighting].get(name, math.nan)) for name, lighting in HIGHLIGHTS]
        cells.append(f"{row['train_seconds'] / 60:.1f} min")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def seed_cells(evaluated_by_seed: dict) -> list:
    """Ablation-style cell records (``ivgf_hf.ablation``) from ``{(variant, seed): entry}`` of protocol "none"."""
    from .ablation import lighting_metrics

    return [
        {"regime": "scratch", "row": _ABLATION_ROWS[name], "seed": seed, "steps": entry["steps"],
         "train_seconds": entry["seconds"], "metrics": lighting_metrics(entry["result"])}
        for (name, seed), entry in evaluated_by_seed.items()
    ]


def _protocol_table(result: dict) -> str:
    from .evaluation.runner import results_to_markdown

    return results_to_markdown(result).split("\n### Protocol")[0].rstrip() + "\n"


def run_quickstart(
    out_dir="ivgf-quickstart",
    *,
    compare: bool = False,
    seeds: int = 1,
    impairments="realistic",
    steps: Optional[int] = None,
    overwrite: bool = False,
    num_train: int = 192,
    num_test: int = 48,
    height: int = 240,
    width: int = 320,
    seed: int = 0,
    num_predictions: int = 6,
    export_check: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Run the quickstart into ``out_dir`` (see the module docstring) and return what it produced.

    Args:
        out_dir: output folder; must be empty or absent unless ``overwrite``.
        compare: also train and evaluate the visible-only, infrared-only and sum-fusion baselines.
        seeds: with ``compare``, train every model for the training seeds ``seed`` ... ``seed + seeds - 1`` and
            write the mean +- std table (``seeds.md`` / ``seeds.json``); the first seed gives the other outputs.
        impairments: the SynthRGBT world: ``"realistic"`` (glare, thermal crossover, sensor dropout,
            misregistration; see docs/data.md) or ``"none"`` (the original world).
        steps: optimizer steps per model (default: the ``synth-seg-cpu`` recipe's).
        overwrite: replace a previous quickstart run in ``out_dir`` (other files there are kept).
        num_train, num_test, height, width, seed: the SynthRGBT data (half of each split at night).
        num_predictions: test images drawn into ``predictions/``.
        export_check: prove the exported model folder loads as remote code in a fresh process.
        log: where progress lines and the tables go.

    Returns:
        ``{"out_dir", "model", "eval", "predictions", "result", "comparison" (rows, with compare), "seeds" (the
        mean +- std summary, with compare), "summary"}``.
    """
    if seeds < 1:
        raise ValueError(f"seeds must be a positive integer, got {seeds}")
    from .ablation import json_ready
    from .data import generate_synthrgbt, load_mfnet
    from .evaluation.runner import evaluate_model, write_evaluation_report
    from .inference import load_model_and_processor

    out = Path(out_dir)
    prepare_output_dir(out, overwrite)
    log(f"[1/4] SynthRGBT ({impairments}): {num_train} training and {num_test} test pairs of {height}x{width} -> "
        f"{out / 'data'}")
    generate_synthrgbt(out / "data", "mfnet", num_train=num_train, num_test=num_test, height=height, width=width,
                       seed=seed, impairments=impairments)
    data = load_mfnet(out / "data", splits=["train", "test"])
    variants = list(VARIANTS) if compare else ["ivgf"]
    training_seeds = list(range(seed, seed + (seeds if compare else 1)))
    runs = [(name, s) for s in training_seeds for name in variants]
    evaluated, evaluated_by_seed = {}, {}
    for number, (name, run_seed) in enumerate(runs, start=1):
        first = run_seed == seed
        run_name = name if first else f"{name}-seed{run_seed}"
        log(f"[2/4] training {VARIANTS[name][0]}, seed {run_seed} ({number}/{len(runs)}) on the CPU -> "
            f"{out / 'runs' / run_name}")
        folder, seconds, used_steps = _train_variant(
            name, data, out, steps, run_seed, export_check and name == "ivgf" and first, run_name
        )
        log(f"      {used_steps} steps in {seconds / 60:.1f} min")
        model, processor = load_model_and_processor(folder)
        protocols = PROTOCOLS if model.config.modalities == "both" and first else ("none",)
        log(f"[3/4] evaluating {VARIANTS[name][0]} on {len(data['test'])} test pairs ({', '.join(protocols)})")
        result = evaluate_model(model, data["test"], task="segmentation", processor=processor, protocols=protocols)
        entry = {"result": result, "seconds": seconds, "steps": used_steps, "folder": folder}
        evaluated_by_seed[(name, run_seed)] = entry
        if not first:
            continue
        evaluated[name] = entry
        if name == "ivgf":
            shutil.copytree(folder, out / "model")
            eval_paths = write_evaluation_report(result, out / "eval", title="IVGF quickstart (tiny, SynthRGBT)")
            log(f"[4/4] writing masks and overlays of {num_predictions} test images -> {out / 'predictions'}")
            predictions = _write_predictions(model, processor, out / "data", data["test"], out / "predictions",
                                             num_predictions)

    main = evaluated["ivgf"]
    summary = [f"## IVGF quickstart: tiny model, {main['steps']} steps, {main['seconds'] / 60:.1f} min on the CPU", "",
               _protocol_table(main["result"])]
    rows = seed_summary = None
    if compare:
        rows = comparison_rows(evaluated)
        table = comparison_markdown(rows)
        summary += [f"### Fusion against the baselines (protocol: none missing, seed {seed})", "", table]
        (out / "comparison.md").write_text(table, encoding="utf-8")
        (out / "comparison.json").write_text(json.dumps(json_ready(rows), indent=2) + "\n", encoding="utf-8")
    if compare and seeds > 1:
        from .ablation import ablation_markdown, summarize_cells

        cells = seed_cells(evaluated_by_seed)
        ablation_rows = [_ABLATION_ROWS[name] for name in variants]
        seed_summary = summarize_cells(cells, ablation_rows, ["scratch"], HIGHLIGHTS)
        seed_table = ablation_markdown(seed_summary, HIGHLIGHTS)
        summary += [f"### Over {seeds} training seeds (mean ± std, protocol: none missing)", "", seed_table]
        (out / "seeds.md").write_text(seed_table, encoding="utf-8")
        (out / "seeds.json").write_text(
            json.dumps(json_ready({"summary": seed_summary, "cells": cells}), indent=1) + "\n", encoding="utf-8"
        )
    text = "\n".join(summary)
    (out / "summary.md").write_text(text, encoding="utf-8")
    log("")
    log(text)
    log(f"model: {out / 'model'} (load with IVGFForSemanticSegmentation.from_pretrained)")
    log(f"metrics and plots: {out / 'eval'}; overlays: {out / 'predictions'}")
    return {
        "out_dir": out,
        "model": out / "model",
        "eval": eval_paths,
        "predictions": predictions,
        "result": main["result"],
        "comparison": rows,
        "seeds": seed_summary,
        "summary": text,
    }
