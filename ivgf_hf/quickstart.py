"""The quickstart: SynthRGBT -> a small IVGF trained on the CPU -> evaluation with the paper's breakdowns.

:func:`run_quickstart` generates SynthRGBT in MFNet's layout, trains the ``tiny`` IVGF with the ``synth-seg-cpu``
recipe, evaluates it per missing-modality protocol (Table VI) and lighting condition, writes the model folder
(``from_pretrained``-loadable), the metrics and overlay PNGs, and returns / prints a short table. With
``compare=True`` it also trains the visible-only and infrared-only models and the sum-fusion baseline (no FEM,
TEM or AGF) on the same data, steps and seed, and compares them where SynthRGBT makes fusion matter: at night,
people are visible only in the infrared image, and bumps only in the visible one.

With ``task="detection"`` the same steps make a detector: SynthRGBT in M3FD's layout, the ``tiny`` IVGF detector
trained with the ``synth-det-cpu`` recipe and evaluated (mAP50-95, mAP50, per-class AP, by protocol and lighting)
at the recipe's ``eval_size``, the scale it was trained at; the model folder's processor resizes to that size too.

Output folder::

    data/                 SynthRGBT (MFNet layout: images/ labels/ train.txt test.txt test_day.txt ...;
                          detection: M3FD layout, Vis/ Ir/ Annotation/ meta/{train,test,day,night}.txt)
    runs/<variant>/       training runs (recipe, logs, checkpoints, final_model/)
    model/                the IVGF model folder (config, safetensors, processor, code)
    eval/                 metrics.json, metrics.md, per_class_iou.png, confusion_matrix.png (detection:
                          per_class_ap.png)
    predictions/          <name>_mask.png and <name>_overlay.png (detection: <name>_boxes.png, boxes with
                          class and score) for a few day and night test images
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
    "TASKS",
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
    "data",
    "runs",
    "model",
    "eval",
    "predictions",
    "comparison.md",
    "comparison.json",
    "seeds.md",
    "seeds.json",
    "summary.md",
)
PROTOCOLS = ("none", "visible_missing", "infrared_missing")
TASKS = ("segmentation", "detection")
LIGHTINGS = ("all", "day", "night")
DEFAULT_OUT = {"segmentation": "ivgf-quickstart", "detection": "ivgf-quickstart-detection"}
_MODEL_CLASS = {"segmentation": "IVGFForSemanticSegmentation", "detection": "IVGFForObjectDetection"}
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
    name: str, data, out: Path, steps: Optional[int], seed: int, export_check: bool, run_name: str, task: str
) -> tuple:
    """Train one variant into ``runs/<run_name>``; returns (final model folder, seconds, recipe)."""
    from .ablation import TASKS as ABLATION_TASKS
    from .ablation import recipe_overrides
    from .training import get_recipe, train

    overrides = {
        "data_root": str(out / "data"),
        "eval_split": None,
        "seed": seed,
        "export_check": export_check,
        **recipe_overrides(VARIANTS[name][1]),
    }
    if steps is not None:
        overrides.update(max_steps=steps, save_every=steps, log_every=max(1, min(20, steps)))
    recipe = get_recipe(ABLATION_TASKS[task].recipe, **overrides)
    started = time.perf_counter()
    result = train(recipe, out / "runs" / run_name, data=data)
    return Path(result.final_model), time.perf_counter() - started, recipe


def _write_predictions(model, processor, data_root: Path, test, out_dir: Path, count: int, task: str) -> list:
    """Masks and overlays (detection: box pictures) for up to ``count`` test images, half day and half night."""
    from .prediction import InputPair, predict_pairs

    names = list(test["name"])
    conditions = list(test["condition"])
    day = [n for n, c in zip(names, conditions) if c == "day"]
    night = [n for n, c in zip(names, conditions) if c == "night"]
    chosen = day[: count - min(len(night), count // 2)] + night[: count // 2]
    if task == "segmentation":
        pairs = [InputPair(name, data_root / "images" / f"{name}.png", None) for name in sorted(chosen)]
    else:
        pairs = [
            InputPair(name, data_root / "Vis" / f"{name}.png", data_root / "Ir" / f"{name}.png")
            for name in sorted(chosen)
        ]
    return predict_pairs(model, processor, pairs, out_dir, task=task, progress=False)


def comparison_rows(results: dict, task: str = "segmentation") -> list:
    """One row per variant: title, the task's metrics by lighting (fractions; ``mIoU_<lighting>``, or
    ``mAP_<lighting>`` (50-95) and ``mAP50_<lighting>``), per-class IoU / AP50-95 by lighting (``per_class_iou`` /
    ``per_class_AP``), training time and steps."""
    from .ablation import TASKS as ABLATION_TASKS

    setup = ABLATION_TASKS[task]
    rows = []
    for name, entry in results.items():
        groups = entry["result"]["results"]["none"]
        row = {"variant": name, "title": VARIANTS[name][0]}
        for metric, _ in setup.metrics:
            for lighting in LIGHTINGS:
                row[f"{metric}_{lighting}"] = groups.get(lighting, {}).get(metric, math.nan)
        row[setup.per_class] = {
            lighting: dict(groups.get(lighting, {}).get(setup.per_class, {})) for lighting in LIGHTINGS
        }
        row.update(train_seconds=entry["seconds"], steps=entry["steps"])
        rows.append(row)
    return rows


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _percent(value) -> str:
    return "n/a" if _is_missing(value) else f"{100.0 * value:.1f}"


def comparison_markdown(rows: list, task: str = "segmentation") -> str:
    """The comparison table (%, one decimal): the task's metrics by lighting and the IoU (detection: AP50-95) of
    its highlights (:data:`ivgf_hf.ablation.HIGHLIGHTS`)."""
    from .ablation import HIGHLIGHTS
    from .ablation import TASKS as ABLATION_TASKS

    setup, highlights = ABLATION_TASKS[task], HIGHLIGHTS[task]
    class_metric = "IoU" if task == "segmentation" else "AP50-95"
    header = ["Model"] + [
        f"{title}{'' if lighting == 'all' else ' ' + lighting}" for _, title in setup.metrics for lighting in LIGHTINGS
    ]
    header += [f"{name} {class_metric}{'' if lighting == 'all' else ' ' + lighting}" for name, lighting in highlights]
    header.append("train time")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["title"]] + [
            _percent(row[f"{metric}_{lighting}"]) for metric, _ in setup.metrics for lighting in LIGHTINGS
        ]
        cells += [_percent(row[setup.per_class][lighting].get(name, math.nan)) for name, lighting in highlights]
        cells.append(f"{row['train_seconds'] / 60:.1f} min")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def seed_cells(evaluated_by_seed: dict) -> list:
    """Ablation-style cell records (``ivgf_hf.ablation``) from ``{(variant, seed): entry}`` of protocol "none"."""
    from .ablation import lighting_metrics

    return [
        {
            "regime": "scratch",
            "row": _ABLATION_ROWS[name],
            "seed": seed,
            "steps": entry["steps"],
            "train_seconds": entry["seconds"],
            "metrics": lighting_metrics(entry["result"]),
        }
        for (name, seed), entry in evaluated_by_seed.items()
    ]


def _protocol_table(result: dict) -> str:
    from .evaluation.runner import results_to_markdown

    return results_to_markdown(result).split("\n### Protocol")[0].rstrip() + "\n"


def run_quickstart(
    out_dir=None,
    *,
    task: str = "segmentation",
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
        out_dir: output folder (default ``ivgf-quickstart``; detection: ``ivgf-quickstart-detection``); must be
            empty or absent unless ``overwrite``.
        task: ``"segmentation"`` (MFNet layout, ``synth-seg-cpu``, mIoU) or ``"detection"`` (M3FD layout,
            ``synth-det-cpu``, mAP50-95 / mAP50).
        compare: also train and evaluate the visible-only, infrared-only and sum-fusion baselines.
        seeds: with ``compare``, train every model for the training seeds ``seed`` ... ``seed + seeds - 1`` and
            write the mean +- std table (``seeds.md`` / ``seeds.json``); the first seed gives the other outputs.
        impairments: the SynthRGBT world: ``"realistic"`` (glare, thermal crossover, sensor dropout,
            misregistration; see docs/data.md) or ``"none"`` (the original world).
        steps: optimizer steps per model (default: the recipe's, ``synth-seg-cpu`` or ``synth-det-cpu``).
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
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    from .ablation import HIGHLIGHTS, evaluation_processor, json_ready, load_task_data
    from .ablation import TASKS as ABLATION_TASKS
    from .data import generate_synthrgbt
    from .evaluation.runner import evaluate_model, write_evaluation_report
    from .inference import load_model_and_processor

    out = Path(out_dir or DEFAULT_OUT[task])
    prepare_output_dir(out, overwrite)
    layout = ABLATION_TASKS[task].layout
    log(
        f"[1/4] SynthRGBT ({impairments}, {layout} layout): {num_train} training and {num_test} test pairs of "
        f"{height}x{width} -> {out / 'data'}"
    )
    generate_synthrgbt(
        out / "data",
        layout,
        num_train=num_train,
        num_test=num_test,
        height=height,
        width=width,
        seed=seed,
        impairments=impairments,
    )
    data = load_task_data(out / "data", task)
    variants = list(VARIANTS) if compare else ["ivgf"]
    training_seeds = list(range(seed, seed + (seeds if compare else 1)))
    runs = [(name, s) for s in training_seeds for name in variants]
    evaluated, evaluated_by_seed = {}, {}
    for number, (name, run_seed) in enumerate(runs, start=1):
        first = run_seed == seed
        run_name = name if first else f"{name}-seed{run_seed}"
        log(
            f"[2/4] training {VARIANTS[name][0]}, seed {run_seed} ({number}/{len(runs)}) on the CPU -> "
            f"{out / 'runs' / run_name}"
        )
        folder, seconds, recipe = _train_variant(
            name, data, out, steps, run_seed, export_check and name == "ivgf" and first, run_name, task
        )
        used_steps = recipe.max_steps
        log(f"      {used_steps} steps in {seconds / 60:.1f} min")
        model, processor = load_model_and_processor(folder)
        processor = evaluation_processor(processor, recipe)
        protocols = PROTOCOLS if model.config.modalities == "both" and first else ("none",)
        log(f"[3/4] evaluating {VARIANTS[name][0]} on {len(data['test'])} test pairs ({', '.join(protocols)})")
        result = evaluate_model(model, data["test"], task=task, processor=processor, protocols=protocols)
        entry = {"result": result, "seconds": seconds, "steps": used_steps, "folder": folder}
        evaluated_by_seed[(name, run_seed)] = entry
        if not first:
            continue
        evaluated[name] = entry
        if name == "ivgf":
            shutil.copytree(folder, out / "model")
            if recipe.eval_size is not None:  # the folder evaluates and predicts at the scale it was trained at
                processor.save_pretrained(out / "model")
            eval_paths = write_evaluation_report(result, out / "eval", title="IVGF quickstart (tiny, SynthRGBT)")
            log(f"[4/4] writing the predictions of {num_predictions} test images -> {out / 'predictions'}")
            predictions = _write_predictions(
                model, processor, out / "data", data["test"], out / "predictions", num_predictions, task
            )

    main = evaluated["ivgf"]
    summary = [
        f"## IVGF quickstart ({task}): tiny model, {main['steps']} steps, {main['seconds'] / 60:.1f} min on the CPU",
        "",
        _protocol_table(main["result"]),
    ]
    rows = seed_summary = None
    if compare:
        rows = comparison_rows(evaluated, task)
        table = comparison_markdown(rows, task)
        summary += [f"### Fusion against the baselines (protocol: none missing, seed {seed})", "", table]
        (out / "comparison.md").write_text(table, encoding="utf-8")
        (out / "comparison.json").write_text(json.dumps(json_ready(rows), indent=2) + "\n", encoding="utf-8")
    if compare and seeds > 1:
        from .ablation import ablation_markdown, summarize_cells

        cells = seed_cells(evaluated_by_seed)
        ablation_rows = [_ABLATION_ROWS[name] for name in variants]
        seed_summary = summarize_cells(cells, ablation_rows, ["scratch"], HIGHLIGHTS[task], task)
        seed_table = ablation_markdown(seed_summary, HIGHLIGHTS[task], task)
        summary += [f"### Over {seeds} training seeds (mean ± std, protocol: none missing)", "", seed_table]
        (out / "seeds.md").write_text(seed_table, encoding="utf-8")
        (out / "seeds.json").write_text(
            json.dumps(json_ready({"summary": seed_summary, "cells": cells}), indent=1) + "\n", encoding="utf-8"
        )
    text = "\n".join(summary)
    (out / "summary.md").write_text(text, encoding="utf-8")
    log("")
    log(text)
    log(f"model: {out / 'model'} (load with {_MODEL_CLASS[task]}.from_pretrained)")
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
