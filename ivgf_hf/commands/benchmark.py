"""``ivgf benchmark``: latency, throughput, training step, memory, FLOPs and utilisation (see ``ivgf_hf.benchmark``)."""

import argparse
import os
import sys
from pathlib import Path

__all__ = ["register", "add_arguments", "main"]

_VARIANTS = ("ivgf", "sum_fusion", "visible", "infrared")  # ivgf_hf.benchmark.VARIANTS, without importing torch here


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark options, shared by ``ivgf benchmark`` and ``scripts/benchmark.py``."""
    what = parser.add_argument_group("what to run")
    what.add_argument("--preset", default="base", help="model preset (default: base)")
    what.add_argument("--task", choices=["segmentation", "detection"], default="segmentation")
    what.add_argument("--size", type=int, default=512, help="square input size in pixels (default 512)")
    what.add_argument("--batch", type=int, default=2, help="images per step (default 2)")
    what.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16 = bf16 autocast")
    what.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: cuda if available")
    what.add_argument(
        "--compile", action="store_true", help="torch.compile the task model (and report its graph breaks)"
    )
    what.add_argument("--channels-last", action="store_true", help="model and inputs in channels-last memory format")
    what.add_argument("--gradient-checkpointing", action="store_true", help="recompute stages in the training step")
    what.add_argument(
        "--variants",
        nargs="*",
        choices=_VARIANTS,
        default=list(_VARIANTS),
        help="models side by side (default: all; none for the AGF / data sections only)",
    )
    what.add_argument(
        "--phases",
        nargs="+",
        choices=["inference", "training", "memory"],
        default=["inference", "training"],
        help="phases measured per model (default: inference and training); memory: one training step "
        "counted op by op, tensor memory by part and FLOPs without timing (what a GPU needs, "
        "measured on any device)",
    )
    how = parser.add_argument_group("how to measure")
    how.add_argument("--warmup", type=int, default=2, help="untimed calls first (default 2)")
    how.add_argument("--iterations", type=int, default=10, help="timed calls; the median is reported (default 10)")
    how.add_argument("--threads", type=int, help="torch CPU threads (default: torch's default)")
    how.add_argument(
        "--in-process",
        dest="isolate",
        action="store_false",
        help="run every case in this process (faster; peak memory then mixes the cases)",
    )
    how.add_argument("--matmul-size", type=int, help="reference matmul size (default 2048 on CPU, 8192 on CUDA)")
    how.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per case (default 3600)")
    agf = parser.add_argument_group("AGF memory section")
    agf.add_argument(
        "--agf-sizes",
        type=int,
        nargs="*",
        default=[256, 512, 768],
        help="input sizes for the AGF memory cases; none to skip (default 256 512 768)",
    )
    agf.add_argument("--agf-passes", nargs="+", choices=["forward", "forward+backward"], default=["forward+backward"])
    agf.add_argument(
        "--agf-max-naive-gib",
        type=float,
        default=8.0,
        help="skip naive attention cases estimated above this (default 8)",
    )
    data = parser.add_argument_group("data pipeline section")
    data.add_argument("--skip-data", dest="data_pipeline", action="store_false", help="skip the data pipeline")
    data.add_argument("--data-pairs", type=int, default=16, help="SynthRGBT pairs generated per task (default 16)")
    data.add_argument("--data-image-size", type=int, nargs=2, default=[480, 640], metavar=("HEIGHT", "WIDTH"))
    data.add_argument("--data-workers", type=int, default=min(2, os.cpu_count() or 1))
    out = parser.add_argument_group("output")
    out.add_argument("--out", type=Path, help="write the JSON report here and the markdown next to it (.md)")
    out.add_argument("--plot", type=Path, metavar="PREFIX", help="write PREFIX_memory.png and PREFIX_time_split.png")
    out.add_argument("--overwrite", action="store_true", help="replace existing output files")


def _settings(args):
    """The options as :class:`~ivgf_hf.benchmark.BenchmarkSettings` (each option's dest is a settings field)."""
    from dataclasses import fields

    from ..benchmark import BenchmarkSettings

    return BenchmarkSettings(**{field.name: getattr(args, field.name) for field in fields(BenchmarkSettings)})


def _benchmark(args) -> int:
    from ..benchmark import plot_report, report_markdown, run_benchmark, write_report
    from ..benchmark.plots import plot_paths
    from ..benchmark.report import report_paths

    outputs = list(report_paths(args.out)) if args.out else []
    outputs += list(plot_paths(args.plot).values()) if args.plot else []
    for path in outputs:  # checked before the run, which can take long, as well as when writing
        if path.exists() and not args.overwrite:
            raise SystemExit(f"ivgf benchmark: {path} exists; pass --overwrite to replace it")
    try:
        settings = _settings(args).resolved()
    except ValueError as error:
        raise SystemExit(f"ivgf benchmark: {error}") from None
    report = run_benchmark(settings, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(report_markdown(report))
    if args.out:
        for path in write_report(report, args.out, overwrite=args.overwrite):
            print(f"wrote {path}", file=sys.stderr)
    if args.plot:
        for path in plot_report(report, args.plot, overwrite=args.overwrite):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def register(commands) -> None:
    parser = commands.add_parser(
        "benchmark",
        help="measure latency, training step, memory, FLOPs and utilisation of IVGF and its baselines",
        description="Benchmark IVGF side by side with the sum-fusion baseline and the single-modality models, the "
        "AGF attention against a naive reference, and the data pipeline. Prints markdown; --out also writes JSON.",
    )
    add_arguments(parser)
    parser.set_defaults(handler=_benchmark)


def main(argv=None) -> int:
    """Entry point of ``scripts/benchmark.py`` (the same options as ``ivgf benchmark``)."""
    parser = argparse.ArgumentParser(prog="benchmark.py", description=__doc__)
    add_arguments(parser)
    return _benchmark(parser.parse_args(argv))
