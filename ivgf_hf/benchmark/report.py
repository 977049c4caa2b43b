"""The report of a run as markdown tables (:func:`report_markdown`) and its JSON + markdown files."""

import json
from pathlib import Path

from .settings import MODULE_GROUPS, PHASES, TASKS


def loader_rate(task_results: dict) -> float:
    """DataLoader pairs/s of one task of the data pipeline section."""
    return next(v for k, v in task_results.items() if k.startswith("dataloader_pairs_per_s"))


def _cell(value, spec: str = ".1f", scale: float = 1.0) -> str:
    """``value * scale`` formatted with ``spec``, or "-" where there is no value."""
    return "-" if value is None else format(value * scale, spec)


def _models_table(report: dict) -> list:
    """Per variant: parameters, latency (ms), images/s, training step (ms), peak memory (MiB), GFLOP and
    utilisation, with ratios to IVGF."""
    rows = report["models"]
    reference = next((r for r in rows if r["variant"] == "ivgf"), rows[0])

    def measured(row, phase) -> dict:
        result = row.get(phase) or {}
        return {} if "error" in result else result

    def ratio(row, phase, key):
        mine, ref = measured(row, phase).get(key), measured(reference, phase).get(key)
        return mine / ref if mine is not None and ref else None

    lines = [
        "| model | params (M) | latency (ms) | images/s | latency / ivgf | CPU time / ivgf | train step (ms) "
        "| step / ivgf | step CPU time / ivgf | peak inference (MiB) | peak training (MiB) | GFLOP / forward "
        "| GFLOP/s | matmul GFLOP/s | utilisation | utilisation (CPU time) |",
        "|---|" + "---:|" * 15,
    ]
    for row in rows:
        inference, training, memory = (measured(row, phase) for phase in PHASES)
        errors = [f"{phase} error: {row[phase]['error']}" for phase in PHASES if "error" in (row.get(phase) or {})]
        cells = [
            row["variant"],
            _cell((inference or training or memory).get("parameters"), ".2f", 1e-6),
            _cell(inference.get("latency_s"), ".1f", 1e3),
            _cell(inference.get("images_per_s"), ".2f"),
            _cell(ratio(row, "inference", "latency_s"), ".2f"),
            _cell(ratio(row, "inference", "cpu_seconds"), ".2f"),
            _cell(training.get("step_s"), ".1f", 1e3),
            _cell(ratio(row, "training", "step_s"), ".2f"),
            _cell(ratio(row, "training", "cpu_seconds"), ".2f"),
            _cell(inference.get("memory", {}).get("peak_bytes"), ".0f", 2**-20),
            _cell(training.get("memory", {}).get("peak_bytes"), ".0f", 2**-20),
            _cell(inference.get("flops", {}).get("total"), ".1f", 1e-9),
            _cell(inference.get("achieved_flop_per_s"), ".1f", 1e-9),
            _cell(inference.get("matmul", {}).get("flop_per_s"), ".1f", 1e-9),
            _cell(inference.get("utilisation"), ".2f"),
            _cell(inference.get("utilisation_cpu_time"), ".2f"),
        ]
        lines.append("| " + " | ".join(cells) + " |" + "".join(f" {error} |" for error in errors))
    return lines


def _split_table(report: dict) -> list:
    """Per variant: share of the forward time of each module group and of ``aten::copy_``."""
    groups = MODULE_GROUPS + ("other",)
    lines = [
        "| model | " + " | ".join(groups) + " | fusion (fem+tem+agf) | aten::copy_ | forward with hooks (ms) |",
        "|---|" + "---:|" * (len(groups) + 3),
    ]
    for row in report["models"]:
        inference = row.get("inference") or {}
        split = inference.get("time_split_cpu_s") or inference.get("time_split_s")
        if split is None:
            continue
        shares = [split[g] / split["total"] for g in groups]
        fusion = sum(split[g] for g in ("fem", "tem", "agf")) / split["total"]
        cells = [f"{100 * s:.1f}%" for s in shares + [fusion, inference["op_profile"]["copy_share"]]]
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + f" | {split['total'] * 1e3:.1f} |")
    return lines


def _flop_split_table(report: dict) -> list:
    """Per variant: share of the forward FLOPs of each module group."""
    lines = ["| model | " + " | ".join(MODULE_GROUPS) + " |", "|---|" + "---:|" * len(MODULE_GROUPS)]
    for row in report["models"]:
        inference = row.get("inference") or {}
        if "flops" not in inference:
            continue
        flops = inference["flops"]
        total = flops["total"] or 1
        cells = [f"{100 * flops['by_group'][g] / total:.1f}%" for g in MODULE_GROUPS]
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    return lines


def _training_table(report: dict) -> list:
    """Per variant: training step (ms), images/s, GFLOP per step, utilisation, hours of the 240k-step schedule
    and peak memory (MiB)."""
    lines = [
        "| model | step (ms) | images/s | GFLOP / step | utilisation | utilisation (CPU time) | 240k steps (h) "
        "| peak (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["models"]:
        training = row.get("training")
        if not training or "error" in training:
            continue
        lines.append(
            f"| {row['variant']} | {training['step_s'] * 1e3:.1f} | {training['images_per_s']:.2f} | "
            f"{training['flops']['total'] / 1e9:.1f} | {training['utilisation']:.2f} | "
            f"{_cell(training.get('utilisation_cpu_time'), '.2f')} | "
            f"{training['schedule_hours']:.1f} | {training['memory']['peak_bytes'] / 2**20:.0f} |"
        )
    return lines


def _counted_step(row: dict) -> dict:
    """The phase of a row whose training step was counted op by op ("memory", else "training"), or {}."""
    for phase in ("memory", "training"):
        result = row.get(phase) or {}
        if "tensor_memory" in result:
            return result
    return {}


def _tensor_memory_table(report: dict) -> list:
    """Per variant: the tensor memory of a training step by part (MiB), counted op by op, and its GFLOP."""
    parts = ("parameters", "optimizer_state", "after_forward", "gradients", "step_peak", "total_peak")
    lines = [
        "| model | parameters + buffers | AdamW state | alive after forward | gradients | step peak | total peak "
        "| GFLOP / step |",
        "|---|" + "---:|" * (len(parts) + 1),
    ]
    for row in report["models"]:
        counted = _counted_step(row)
        if counted:
            memory = counted["tensor_memory"]
            cells = [f"{memory[p] / 2**20:,.0f}" for p in parts] + [f"{counted['flops']['total'] / 1e9:,.1f}"]
            lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    return lines


def _graph_break_table(report: dict) -> list:
    """Per variant: graphs and graph breaks of the compiled inference forward, with each distinct reason."""
    lines = ["| model | graphs | graph breaks | reasons |", "|---|---:|---:|---|"]
    for row in report["models"]:
        breaks = (row.get("inference") or {}).get("graph_breaks")
        if breaks is None:
            continue
        reasons = []
        for entry in breaks["break_reasons"]:
            first_line = (entry["reason"].strip().splitlines() or [""])[0]
            text = f"{first_line} ({entry['location']})" if entry["location"] else first_line
            if text not in reasons:
                reasons.append(text)
        cells = [
            row["variant"],
            str(breaks["graph_count"]),
            str(breaks["graph_break_count"]),
            "; ".join(reasons).replace("|", "\\|") or "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def agf_memory_markdown(rows: list) -> str:
    """Markdown table of AGF memory cases: peak increase and its growth next to the growth of the token count."""
    lines = [
        "| size | tokens | attention | pass | peak increase (MiB) | x smallest | tokens x smallest | seconds |",
        "|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    smallest = {}
    for row in rows:
        tokens = (row["size"] // row["stride"]) ** 2
        head = f"| {row['size']} | {tokens} | {row['implementation']} | {row['pass']} |"
        problem = row.get("skipped") or row.get("error")
        if problem:
            lines.append(f"{head} {'skipped' if 'skipped' in row else 'error'}: {problem} | | | |")
            continue
        mib = row["peak_increase_bytes"] / 2**20
        base_tokens, base_mib = smallest.setdefault((row["implementation"], row["pass"]), (tokens, mib))
        growth = f"{mib / base_mib:.1f}" if base_mib > 0 else "-"
        lines.append(f"{head} {mib:.1f} | {growth} | {tokens / base_tokens:.1f} | {row['seconds']:.2f} |")
    return "\n".join(lines)


def _data_table(data: dict) -> list:
    """Pairs/s of decoding, decoding + augmenting and the DataLoader per task, or why the section is missing."""
    if "skipped" in data or "error" in data:
        return [f"data pipeline {'skipped' if 'skipped' in data else 'error'}: {data.get('skipped') or data['error']}"]
    lines = [
        "| task | decode (pairs/s, 1 process) | decode + augment (pairs/s, 1 process) | DataLoader (pairs/s) |",
        "|---|---:|---:|---:|",
    ]
    for task in TASKS:
        values = data.get(task)
        if values:
            lines.append(
                f"| {task} | {values['decode_pairs_per_s_1_process']:.1f} | "
                f"{values['decode_and_augment_pairs_per_s_1_process']:.1f} | {loader_rate(values):.1f} |"
            )
    workers = data["settings"]["workers"]
    lines.append(
        f"\nDataLoader with {workers} worker(s), {data['settings']['height']}x{data['settings']['width']} "
        f"pairs cropped to {data['settings']['crop']}."
    )
    return lines


def _model_sections(report: dict) -> list:
    """The model sections: variants side by side, training step, graph breaks (compile), time and FLOPs by module."""
    lines = [
        "",
        "### Models",
        "",
        *_models_table(report),
        "",
        "Utilisation = FLOPs per forward / latency / dense matmul FLOP/s, measured in the same process before and "
        "after the model (the fastest of the products). On the CPU, the CPU-time columns use the CPU seconds of the "
        "process instead of wall time (utilisation (CPU time): FLOPs per CPU-second over the matmul's), which other "
        "load on a shared machine changes much less.",
    ]
    if any("training" in row and "error" not in row["training"] for row in report["models"]):
        lines += ["", "### Training step (forward + backward + AdamW)", "", *_training_table(report)]
    if any(_counted_step(row) for row in report["models"]):
        lines += [
            "",
            "### Training step tensor memory (MiB; storages created by aten ops, counted on any device)",
            "",
            *_tensor_memory_table(report),
            "",
            "Total peak = parameters + AdamW state + step peak: the tensor memory a device must hold for the step, "
            "without the allocator's rounding and fragmentation or kernel workspaces. Alive after forward: what "
            "the backward keeps (activations, autocast weight copies) and the loss.",
        ]
    if any("graph_breaks" in (row.get("inference") or {}) for row in report["models"]):
        lines += [
            "",
            "### torch.compile graph breaks (inference forward, torch._dynamo.explain)",
            "",
            *_graph_break_table(report),
        ]
    if not any("inference" in row and "error" not in row["inference"] for row in report["models"]):
        return lines  # the by-module sections come from the inference phase
    return lines + [
        "",
        "### Forward time by module (forward hooks on the eager model; CPU time of the process on the CPU, "
        "synchronised wall time on CUDA)",
        "",
        *_split_table(report),
        "",
        "### Forward FLOPs by module",
        "",
        *_flop_split_table(report),
    ]


def report_markdown(report: dict) -> str:
    """The report as markdown: settings and device, then one table per section."""
    s, m = report["settings"], report["machine"]
    load = m.get("load_average_start")
    load_end = m.get("load_average_end")
    header = [
        f"## IVGF benchmark: `{s['preset']}` {s['task']}, {s['size']}x{s['size']}, batch {s['batch']}, {s['dtype']}"
        f"{' autocast' if s['dtype'] != 'fp32' else ''}, compile {'on' if s['compile'] else 'off'}, "
        f"channels-last {'on' if s['channels_last'] else 'off'}, gradient checkpointing "
        f"{'on' if s['gradient_checkpointing'] else 'off'}",
        "",
        f"Device: {m['device_name']} ({m['device']}), {m['threads']} torch threads; torch {m['torch']}"
        + (f", transformers {m['transformers']}" if "transformers" in m else "")
        + (f"; load average (1 min) {load[0]:.1f} at start" if load else "")
        + (f", {load_end[0]:.1f} at end" if load_end else "")
        + f". Median of {s['iterations']} after {s['warmup']} warm-up; "
        + ("each phase in a fresh process." if s["isolate"] else "all phases in one process."),
    ]
    if report["models"]:
        header += _model_sections(report)
    if report["agf_memory"]:
        header += [
            "",
            "### AGF peak memory: SDPA vs naive attention (stride-4 fusion, batch 1)",
            "",
            agf_memory_markdown(report["agf_memory"]),
        ]
    if "data_pipeline" in report:
        header += ["", "### Data pipeline", "", *_data_table(report["data_pipeline"])]
    return "\n".join(header) + "\n"


def report_paths(out: Path) -> tuple:
    """The files :func:`write_report` writes for ``out``: the JSON itself and the markdown next to it."""
    out = Path(out)
    return out, out.with_suffix(".md")


def write_report(report: dict, out: Path, overwrite: bool = False) -> tuple:
    """Write ``out`` (JSON) and the markdown next to it (``.md``); FileExistsError unless ``overwrite``."""
    out, markdown = report_paths(out)
    existing = [str(p) for p in (out, markdown) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)} exist; pass overwrite=True (--overwrite) to replace them")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    markdown.write_text(report_markdown(report))
    return out, markdown
