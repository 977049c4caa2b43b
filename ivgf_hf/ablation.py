"""The ablation runner: the paper's Table IV rows (and the baselines) trained on the same data over several seeds.

:func:`run_ablation` generates SynthRGBT once, trains every requested row for every seed with the ``synth-seg-cpu``
recipe, evaluates each model on the test split by lighting (protocol "none"), and writes a table of mean +- std
with every seed's value. ``task="detection"`` gives Table IV's detection column: SynthRGBT in the M3FD layout, the
``synth-det-cpu`` recipe, mAP50-95 and mAP50 by lighting. Two regimes, as in the paper:

* ``"scratch"``: every model starts from random weights (the paper's "IVGF (Scratch)").
* ``"pretrained"``: the fused rows start from encoders that already know their modality. Here they come from
  the visible-only and infrared-only models of the same seed, trained on the training split; their encoders are
  written in the original ConvMAE / InfMAE checkpoint layout (:func:`ivgf_hf.conversion.save_original_encoder`) and
  loaded through the recipe's ``visible_checkpoint`` / ``infrared_checkpoint``, the path the published InfMAE and
  MCMAE weights take, and are fine-tuned with the paper's layer-wise lr decay of 0.75. The single-modality rows of
  this regime are those pretraining models.

Every (regime, row, seed) cell is saved as ``cells/<regime>-<row>-seed<k>.json`` (detection:
``cells/detection-<regime>-<row>-seed<k>.json``) once done, so an interrupted run continues where it stopped and a
later call can add rows or seeds. One output folder holds one task's data: a detection ablation needs its own
folder (``ivgf ablate --task detection`` defaults to ``ivgf-ablation-detection``). Output folder::

    data/            SynthRGBT (MFNet layout; M3FD layout for detection)
    runs/            one training run per cell (final_model/ kept only for the pretraining models)
    encoders/        seed<k>/visible_encoder.pth, infrared_encoder.pth (pretrained regime)
    cells/           one JSON per finished cell
    ablation.json    every cell and the summary per regime and row
    ablation.md      the tables (mean +- std, then every seed)
    ablation.png     mIoU (detection: mAP50-95) per row with the seeds' spread
"""

from __future__ import annotations

import json
import math
import multiprocessing
import shutil
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from .modeling.configuration_ivgf import LITERAL_FUSION_DEFAULTS
from .threads import resolve_num_threads

__all__ = [
    "ROWS",
    "LITERAL_PAPER_FUSION",
    "REGIMES",
    "DEFAULT_ROWS",
    "TASKS",
    "TaskSetup",
    "HIGHLIGHTS",
    "recipe_overrides",
    "load_task_data",
    "evaluation_processor",
    "run_ablation",
    "summarize_cells",
    "ablation_markdown",
    "add_impairment_breakdown",
    "lighting_metrics",
    "json_ready",
]

# The fusion modules exactly as the paper writes them (no trainable-start deviations; docs/model.md).
LITERAL_PAPER_FUSION = dict(LITERAL_FUSION_DEFAULTS)
_NO_FUSION = dict(use_fem=False, use_tem=False, use_agf=False)


def _fusion(**switches) -> dict:
    return {"model_overrides": {**_NO_FUSION, **switches}}


# name -> (title, recipe overrides). The single-modality rows never use cutout&mix (its cutmix part would paste the
# other modality into their only input).
ROWS = {
    "sum": ("Baseline: sum fusion", _fusion()),
    "fem": ("+ FEM", _fusion(use_fem=True)),
    "agf": ("+ AGF", _fusion(use_agf=True)),
    "tem": ("+ TEM", _fusion(use_tem=True)),
    "cma": ("+ CMA", {**_fusion(), "cma": True}),
    "fem_agf": ("+ FEM + AGF", _fusion(use_fem=True, use_agf=True)),
    "fem_tem": ("+ FEM + TEM", _fusion(use_fem=True, use_tem=True)),
    "agf_tem": ("+ AGF + TEM", _fusion(use_agf=True, use_tem=True)),
    "ivgf": ("IVGF (FEM + TEM + AGF)", {}),
    "ivgf_cma": ("IVGF + CMA", {"cma": True}),
    "ivgf_literal": ("IVGF, literal paper form", {"model_overrides": dict(LITERAL_PAPER_FUSION)}),
    "ivgf_no_fan_init": ("IVGF without fan init", {"model_overrides": {"fusion_fan_init": False}}),
    "ivgf_fast_tem": (
        "IVGF, TEM prompts in (0, 2) from 1",
        {"model_overrides": {"tem_prompt_range": 2.0, "tem_initial_prompt": 1.0}},
    ),
    "ivgf_merge_norm": (
        "IVGF, AGF's merge output normalised before gamma",
        {"model_overrides": {"agf_merge_norm": True}},
    ),
    "ivgf_modality_aux": (
        "IVGF + each modality's own auxiliary loss",
        {"model_overrides": {"modality_auxiliary_loss_weight": 0.4}},
    ),
    "sum_modality_aux": (
        "Sum fusion + each modality's own auxiliary loss",
        _fusion(modality_auxiliary_loss_weight=0.4),
    ),
    "ivgf_global_agf": (
        "IVGF, AGF attention over the whole map (eq. 18-19)",
        {"model_overrides": {"agf_neighbourhood": 0}},
    ),
    "visible_only": ("Visible only", {"model_overrides": {"modalities": "visible"}, "cma": False}),
    "infrared_only": ("Infrared only", {"model_overrides": {"modalities": "infrared"}, "cma": False}),
}
DEFAULT_ROWS = ("ivgf", "sum", "visible_only", "infrared_only")
REGIMES = ("scratch", "pretrained")


@dataclass(frozen=True)
class TaskSetup:
    """What one task trains and records: the CPU recipe, SynthRGBT's layout, the headline metrics as
    ``(key in the evaluation result, title)`` (the first is plotted) and the per-class key of the result."""

    recipe: str
    layout: str
    metrics: tuple
    per_class: str


TASKS = {
    "segmentation": TaskSetup("synth-seg-cpu", "mfnet", (("mIoU", "mIoU"),), "per_class_iou"),
    "detection": TaskSetup("synth-det-cpu", "m3fd", (("mAP", "mAP50-95"), ("mAP50", "mAP50")), "per_class_AP"),
}
# The pretrained regime fine-tunes its encoders with the paper's layer-wise lr decay (ConvMAE's recipe).
PRETRAINED_LAYER_DECAY = 0.75
LIGHTINGS = ("all", "day", "night")
# (class, lighting) reported next to the headline metrics, where one modality is blind in SynthRGBT
# (ivgf_hf.data.synthetic_scene): people at night are seen only in the infrared image, bumps only in the visible one.
HIGHLIGHTS = {"segmentation": (("person", "night"), ("bump", "all")), "detection": (("People", "night"),)}
DEFAULT_OUT = {"segmentation": "ivgf-ablation", "detection": "ivgf-ablation-detection"}
_SINGLE = {"visible_only": "visible", "infrared_only": "infrared"}


def _cell_name(task: str, regime: str, row: str, seed: int) -> str:
    return f"{regime}-{row}-seed{seed}" if task == "segmentation" else f"{task}-{regime}-{row}-seed{seed}"


def _check_task(task: str) -> TaskSetup:
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    return TASKS[task]


def recipe_overrides(overrides: dict) -> dict:
    """A row's overrides with ``model_overrides`` as dotted keys, so that they add to the recipe's own
    ``model_overrides`` (synth-det-cpu's anchors) instead of replacing them."""
    flat = {key: value for key, value in overrides.items() if key != "model_overrides"}
    flat.update({f"model_overrides.{key}": value for key, value in overrides.get("model_overrides", {}).items()})
    return flat


def load_task_data(root: Path, task: str):
    """The SynthRGBT ``train`` / ``test`` splits in ``root`` for ``task``, with day / night conditions."""
    from .data import load_mfnet, load_synthrgbt_detection

    if task == "detection":
        return load_synthrgbt_detection(root)
    return load_mfnet(root, splits=["train", "test"])


def evaluation_processor(processor, recipe):
    """``processor`` resized to the recipe's ``eval_size`` (the scale the detector was trained at), as training
    evaluates; unchanged without one."""
    from .training.loop import _eval_processor

    return _eval_processor(processor, recipe.eval_size)


def _check_arguments(rows: Sequence[str], seeds: Sequence[int], regimes: Sequence[str]) -> None:
    unknown = [row for row in rows if row not in ROWS]
    if unknown:
        raise ValueError(f"unknown ablation rows {unknown}; available: {', '.join(ROWS)}")
    bad = [regime for regime in regimes if regime not in REGIMES]
    if bad:
        raise ValueError(f"unknown regimes {bad}; available: {', '.join(REGIMES)}")
    if not rows or not seeds or not regimes:
        raise ValueError("rows, seeds and regimes must each name at least one entry")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {list(seeds)}")


def _encoder_paths(out: Path, seed: int) -> dict:
    folder = out / "encoders" / f"seed{seed}"
    return {modality: folder / f"{modality}_encoder.pth" for modality in ("visible", "infrared")}


def _cell_recipe(out: Path, task: str, regime: str, row: str, seed: int, steps: Optional[int]):
    from .training import get_recipe

    overrides = {
        "data_root": str(out / "data"),
        "eval_split": None,
        "seed": seed,
        "export_check": False,
        **recipe_overrides(ROWS[row][1]),
    }
    if steps is not None:
        overrides.update(max_steps=steps, save_every=steps, log_every=max(1, min(20, steps)))
    if regime == "pretrained" and row not in _SINGLE:
        paths = _encoder_paths(out, seed)
        overrides.update(
            visible_checkpoint=str(paths["visible"]),
            infrared_checkpoint=str(paths["infrared"]),
            layer_decay=PRETRAINED_LAYER_DECAY,
        )
    return get_recipe(TASKS[task].recipe, **overrides)


def _evaluate(folder: Path, test, task: str, recipe) -> dict:
    """The task's metrics by lighting (fractions) of the model in ``folder`` (protocol "none")."""
    from .evaluation.runner import evaluate_model
    from .inference import load_model_and_processor

    model, processor = load_model_and_processor(folder)
    return lighting_metrics(
        evaluate_model(model, test, task=task, processor=evaluation_processor(processor, recipe), protocols=("none",))
    )


def lighting_metrics(result: dict) -> dict:
    """``{lighting: {<headline metrics>, <per-class key>}}`` (fractions, NaN where absent) of an ``evaluate_model``
    result's protocol "none", the metrics a cell records: ``"mIoU"`` and ``"per_class_iou"`` (segmentation), or
    ``"mAP"`` (50-95), ``"mAP50"`` and ``"per_class_AP"`` (detection)."""
    setup = TASKS[result["task"]]
    groups = result["results"]["none"]
    metrics = {}
    for lighting in LIGHTINGS:
        group = groups.get(lighting, {})
        metrics[lighting] = {key: group.get(key, math.nan) for key, _ in setup.metrics}
        metrics[lighting][setup.per_class] = dict(group.get(setup.per_class, {}))
    return metrics


def _impairment_groups(data_root: Path, test) -> dict:
    """``{group: test indices}`` from SynthRGBT's ``impairments.json``: "clean" and one group per impairment."""
    path = data_root / "impairments.json"
    if not path.exists():
        return {}
    images = json.loads(path.read_text(encoding="utf-8"))["images"]
    groups = {}
    for index, name in enumerate(test["name"]):
        applied = images.get(name, {}).get("impairments", {})
        for group in applied or ("clean",):
            groups.setdefault(group, []).append(index)
    return groups


def _evaluate_by_impairment(folder: Path, test, groups: dict) -> dict:
    """mIoU (protocol "none") of the model in ``folder`` on each impairment group of the test split."""
    from .evaluation.runner import evaluate_model
    from .inference import load_model_and_processor

    model, processor = load_model_and_processor(folder)
    scores = {}
    for group, indices in sorted(groups.items()):
        result = evaluate_model(
            model, test.select(indices), task="segmentation", processor=processor, protocols=("none",)
        )
        scores[group] = {"mIoU": result["results"]["none"]["all"]["mIoU"], "count": len(indices)}
    return scores


def _run_cell(
    out: Path, task: str, regime: str, row: str, seed: int, steps: Optional[int], threads: Optional[int]
) -> dict:
    """Train and evaluate one cell in this process; returns (and saves) its record."""
    import torch

    from .training import train

    if threads:
        torch.set_num_threads(threads)
    name = _cell_name(task, regime, row, seed)
    run_dir = out / "runs" / name
    recipe = _cell_recipe(out, task, regime, row, seed, steps)
    data = load_task_data(out / "data", task)
    started = time.perf_counter()
    result = train(recipe, run_dir, data=data, overwrite=True)
    seconds = time.perf_counter() - started
    final = Path(result.final_model)
    record = {
        "regime": regime,
        "row": row,
        "seed": seed,
        "steps": recipe.max_steps,
        "train_seconds": seconds,
        "metrics": _evaluate(final, data["test"], task, recipe),
    }
    groups = _impairment_groups(out / "data", data["test"]) if task == "segmentation" else {}
    if groups:
        record["by_impairment"] = _evaluate_by_impairment(final, data["test"], groups)
    if regime == "scratch" and row in _SINGLE:
        _save_pretrained_encoder(final, _encoder_paths(out, seed)[_SINGLE[row]], _SINGLE[row])
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    (out / "cells").mkdir(exist_ok=True)
    (out / "cells" / f"{name}.json").write_text(json.dumps(json_ready(record), indent=1) + "\n", encoding="utf-8")
    return record


def _save_pretrained_encoder(model_folder: Path, path: Path, modality: str) -> None:
    """Write the single-modality model's encoder in the original checkpoint layout."""
    from .conversion import save_original_encoder
    from .inference import load_model_and_processor

    model, _ = load_model_and_processor(model_folder)
    save_original_encoder(getattr(model.ivgf, f"{modality}_encoder"), path)


def json_ready(value):
    """``value`` with NaN (a class or lighting absent from the test split) replaced by None, recursively."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_ready(item) for item in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def _load_cell(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _plan(rows: Sequence[str], seeds: Sequence[int], regimes: Sequence[str]) -> list:
    """The cells to run, in dependency order: the pretraining models (scratch single-modality rows) first."""
    cells = []
    if "pretrained" in regimes:
        cells += [("scratch", row, seed) for seed in seeds for row in _SINGLE]
    for regime in regimes:
        for seed in seeds:
            cells += [(regime, row, seed) for row in rows if not (regime == "pretrained" and row in _SINGLE)]
    unique = []
    for cell in cells:
        if cell not in unique:
            unique.append(cell)
    return unique


def _mean_std(values: list) -> tuple:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize_cells(
    cells: list, rows: Sequence[str], regimes: Sequence[str], highlights: Sequence = (), task: str = "segmentation"
) -> dict:
    """``{regime: {row: {"<metric>_<lighting>": {"mean", "std", "seeds": {seed: value}}, ...}}}`` from cell
    records; the metrics are the task's (:data:`TASKS`): ``mIoU``, or ``mAP`` (50-95) and ``mAP50``.

    ``highlights`` are (class, lighting) pairs whose IoU (detection: AP50-95) is summarised too, as
    ``"<class>_<lighting>"``. The pretrained regime's single-modality rows are the scratch regime's (they are its
    pretraining models).
    """
    setup = _check_task(task)
    summary = {}
    for regime in regimes:
        table = {}
        for row in rows:
            source = "scratch" if row in _SINGLE else regime
            chosen = sorted((c for c in cells if c["regime"] == source and c["row"] == row), key=lambda c: c["seed"])
            if not chosen:
                continue
            entry = {}
            metrics = [
                (f"{metric}_{lighting}", lighting, metric, None)
                for metric, _ in setup.metrics
                for lighting in LIGHTINGS
            ]
            metrics += [(f"{name}_{lighting}", lighting, None, name) for name, lighting in highlights]
            for key, lighting, metric, class_name in metrics:
                per_seed = {}
                for cell in chosen:
                    group = cell["metrics"].get(lighting) or {}
                    value = group.get(metric) if class_name is None else group.get(setup.per_class, {}).get(class_name)
                    per_seed[cell["seed"]] = math.nan if value is None else value
                mean, std = _mean_std(list(per_seed.values()))
                entry[key] = {"mean": mean, "std": std, "seeds": per_seed}
            entry["train_minutes"] = statistics.fmean(c["train_seconds"] for c in chosen) / 60
            groups = sorted({g for c in chosen for g in c.get("by_impairment", {})})
            entry["by_impairment"] = {
                group: dict(
                    zip(
                        ("mean", "std"),
                        _mean_std([c.get("by_impairment", {}).get(group, {}).get("mIoU", math.nan) for c in chosen]),
                    )
                )
                for group in groups
            }
            table[row] = entry
        summary[regime] = table
    return summary


def _pm(stat: dict) -> str:
    if math.isnan(stat["mean"]):
        return "n/a"
    return f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f}"


def _seeds(stat: dict) -> str:
    return " / ".join("n/a" if math.isnan(v) else f"{100 * v:.1f}" for _, v in sorted(stat["seeds"].items()))


def ablation_markdown(summary: dict, highlights: Sequence = (), task: str = "segmentation") -> str:
    """The tables (%, mean ± sample std over seeds, then every seed's value).

    Segmentation: one table with the mIoU of every seed in a column. Detection: the mean ± std table of mAP50-95
    and mAP50 (all, day, night), then the same columns with every seed's value.
    """
    setup = _check_task(task)
    metric_keys = [f"{metric}_{lighting}" for metric, _ in setup.metrics for lighting in LIGHTINGS]
    metric_titles = [
        f"{title}{'' if lighting == 'all' else ' ' + lighting}" for _, title in setup.metrics for lighting in LIGHTINGS
    ]
    class_metric = "IoU" if task == "segmentation" else "AP50-95"
    keys = metric_keys + [f"{n}_{lighting}" for n, lighting in highlights]
    titles = metric_titles + [f"{n} {class_metric} {lighting}" for n, lighting in highlights]
    headline = metric_keys[0]
    inline_seeds = task == "segmentation"
    lines = []
    for regime, table in summary.items():
        if not table:
            continue
        seeds = sorted({seed for entry in table.values() for seed in entry[headline]["seeds"]})
        lines += [f"### Regime: {regime} ({len(seeds)} seeds: {', '.join(map(str, seeds))})", ""]
        seed_title = f" {metric_titles[0]} per seed |" if inline_seeds else ""
        lines.append("| Model | " + " | ".join(titles) + f" |{seed_title} train time |")
        lines.append("|---" * (len(titles) + 2 + inline_seeds) + "|")
        for row, entry in table.items():
            cells = [ROWS[row][0]] + [_pm(entry[key]) for key in keys]
            cells += [_seeds(entry[headline])] if inline_seeds else []
            cells.append(f"{entry['train_minutes']:.1f} min")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        if not inline_seeds:
            lines += [f"Every seed ({regime}; seeds {', '.join(map(str, seeds))} in that order):", ""]
            lines.append("| Model | " + " | ".join(metric_titles) + " |")
            lines.append("|---" * (len(metric_titles) + 1) + "|")
            for row, entry in table.items():
                lines.append("| " + " | ".join([ROWS[row][0]] + [_seeds(entry[key]) for key in metric_keys]) + " |")
            lines.append("")
        groups = sorted({g for entry in table.values() for g in entry.get("by_impairment", {})})
        if groups:
            lines += [f"mIoU by impairment of the test image ({regime}; an image can have several):", ""]
            lines.append("| Model | " + " | ".join(groups) + " |")
            lines.append("|---" * (len(groups) + 1) + "|")
            for row, entry in table.items():
                stats = [entry["by_impairment"].get(g, {"mean": math.nan, "std": math.nan}) for g in groups]
                lines.append("| " + " | ".join([ROWS[row][0]] + [_pm(stat) for stat in stats]) + " |")
            lines.append("")
    return "\n".join(lines)


def _plot(summary: dict, path: Path, task: str) -> Optional[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    regimes = [regime for regime, table in summary.items() if table]
    if not regimes:
        return None
    metric, title = TASKS[task].metrics[0]
    key = f"{metric}_all"
    figure, axes = plt.subplots(1, len(regimes), figsize=(6 * len(regimes), 4), squeeze=False)
    for axis, regime in zip(axes[0], regimes, strict=True):
        table = summary[regime]
        names = list(table)
        means = [100 * table[n][key]["mean"] for n in names]
        stds = [100 * table[n][key]["std"] for n in names]
        axis.barh(range(len(names)), means, xerr=stds, color="#88a", capsize=3)
        for index, name in enumerate(names):
            values = [100 * v for v in table[name][key]["seeds"].values() if not math.isnan(v)]
            axis.scatter(values, [index] * len(values), color="k", s=8, zorder=3)
        axis.set_yticks(range(len(names)), [ROWS[n][0] for n in names])
        axis.invert_yaxis()
        axis.set_xlabel(f"{title} (%), mean ± std, dots: seeds")
        axis.set_title(f"regime: {regime}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def add_impairment_breakdown(out_dir, log: Callable[[str], None] = print) -> int:
    """Evaluate the final model of every finished cell in ``out_dir`` (a segmentation ablation) lacking it on each
    impairment group of the test split (SynthRGBT's ``impairments.json``) and save it in the cell; returns the
    number of cells updated."""
    from .data import load_mfnet

    out = Path(out_dir)
    test = load_mfnet(out / "data", splits=["test"])["test"]
    groups = _impairment_groups(out / "data", test)
    updated = 0
    for path in sorted((out / "cells").glob("*.json")):
        cell = _load_cell(path)
        folder = out / "runs" / path.stem / "final_model"
        if not groups or cell is None or "by_impairment" in cell or not folder.is_dir():
            continue
        cell["by_impairment"] = _evaluate_by_impairment(folder, test, groups)
        path.write_text(json.dumps(json_ready(cell), indent=1) + "\n", encoding="utf-8")
        log(f"impairment breakdown: {path.stem}")
        updated += 1
    return updated


def run_ablation(
    out_dir=None,
    *,
    task: str = "segmentation",
    rows: Sequence[str] = DEFAULT_ROWS,
    seeds: Sequence[int] = (0, 1, 2),
    regimes: Sequence[str] = ("scratch",),
    steps: Optional[int] = None,
    jobs: int = 1,
    num_train: int = 192,
    num_test: int = 48,
    height: int = 240,
    width: int = 320,
    data_seed: int = 0,
    impairments="realistic",
    highlights: Optional[Sequence] = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Train and evaluate ``rows`` x ``seeds`` x ``regimes`` into ``out_dir`` (see the module docstring).

    Args:
        out_dir: output folder (default ``ivgf-ablation``; detection: ``ivgf-ablation-detection``).
        task: ``"segmentation"`` (mIoU, ``synth-seg-cpu``) or ``"detection"`` (mAP50-95 / mAP50,
            ``synth-det-cpu``, SynthRGBT in the M3FD layout).
        rows: names from :data:`ROWS`.
        seeds: training seeds (the data are the same for all: ``data_seed``).
        regimes: ``"scratch"`` and / or ``"pretrained"``.
        steps: optimizer steps per model (default: the recipe's, 800 for segmentation and 700 for detection).
        jobs: cells trained at once, each in its own process with cores / jobs torch threads
            (or ``IVGF_NUM_THREADS``; see :mod:`ivgf_hf.threads`).
        num_train, num_test, height, width, data_seed, impairments: the SynthRGBT data.
        highlights: (class, lighting) IoUs (detection: AP50-95) reported next to the headline metrics;
            default :data:`HIGHLIGHTS` of the task.
        log: where progress lines and the tables go.

    Returns:
        ``{"summary", "markdown", "cells", "paths"}``.
    """
    from .data import generate_synthrgbt

    setup = _check_task(task)
    rows, seeds, regimes = list(rows), [int(s) for s in seeds], list(regimes)
    _check_arguments(rows, seeds, regimes)
    if jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs}")
    highlights = HIGHLIGHTS[task] if highlights is None else highlights
    out = Path(out_dir or DEFAULT_OUT[task])
    data_settings = {
        "num_train": num_train,
        "num_test": num_test,
        "height": height,
        "width": width,
        "seed": data_seed,
        "impairments": impairments,
    }
    if task != "segmentation":  # a segmentation folder's settings stay as they were written
        data_settings["task"] = task
    settings_path = out / "data_settings.json"
    if settings_path.exists():
        saved = json.loads(settings_path.read_text(encoding="utf-8"))
        if saved != json.loads(json.dumps(data_settings)):
            raise FileExistsError(f"{out} holds an ablation on other data ({saved}); use another folder or delete it")
    else:
        out.mkdir(parents=True, exist_ok=True)
        log(f"SynthRGBT ({impairments}): {num_train} training and {num_test} test pairs of {height}x{width}")
        generate_synthrgbt(
            out / "data",
            setup.layout,
            num_train=num_train,
            num_test=num_test,
            height=height,
            width=width,
            seed=data_seed,
            impairments=impairments,
        )
        settings_path.write_text(json.dumps(data_settings, indent=1) + "\n", encoding="utf-8")

    plan = _plan(rows, seeds, regimes)
    todo = [cell for cell in plan if _load_cell(out / "cells" / f"{_cell_name(task, *cell)}.json") is None]
    log(f"{len(plan)} cells, {len(plan) - len(todo)} already done; {jobs} at a time")
    threads = resolve_num_threads(processes=jobs)
    # The pretraining models run first; the fused pretrained cells wait for their encoders.
    stages = [[c for c in todo if c[0] == "scratch" and c[1] in _SINGLE and "pretrained" in regimes]]
    stages.append([c for c in todo if c not in stages[0]])
    for stage in stages:
        if jobs == 1:
            for cell in stage:
                log(f"training {_cell_name(task, *cell)}")
                _run_cell(out, task, *cell, steps, None)
        elif stage:
            with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = {pool.submit(_run_cell, out, task, *cell, steps, threads): cell for cell in stage}
                for future, cell in futures.items():
                    future.result()
                    log(f"done {_cell_name(task, *cell)}")

    cells = [c for c in (_load_cell(out / "cells" / f"{_cell_name(task, *cell)}.json") for cell in plan) if c]
    summary = summarize_cells(cells, rows, regimes, highlights, task)
    markdown = ablation_markdown(summary, highlights, task)
    paths = {"json": out / "ablation.json", "markdown": out / "ablation.md"}
    paths["json"].write_text(
        json.dumps(json_ready({"summary": summary, "cells": cells}), indent=1) + "\n", encoding="utf-8"
    )
    paths["markdown"].write_text(markdown, encoding="utf-8")
    plot = _plot(summary, out / "ablation.png", task)
    if plot is not None:
        paths["plot"] = plot
    log(markdown)
    return {"summary": summary, "markdown": markdown, "cells": cells, "paths": paths}
