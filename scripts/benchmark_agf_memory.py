"""Peak memory of one attention-guided fusion (AGF) pass: ``scaled_dot_product_attention`` vs naive attention.

Each case (image size, attention implementation, pass) runs in a fresh subprocess. The AGF module works on the
stride-4 maps of an image of the given size (256 -> 64 x 64 = 4,096 tokens, 512 -> 16,384, 768 -> 36,864), with
the base model's stride-4 channels (256) and heads (4). The naive implementation writes out
softmax(Q K^T / sqrt(d)) V and is skipped where its attention matrices would exceed ``--max-naive-gib``.

Memory is the increase of the peak over the memory in use just before the pass: on CUDA
``torch.cuda.max_memory_allocated``; on the CPU the peak resident set size (``ru_maxrss``, whose mark is reset to the
current RSS through ``/proc/self/clear_refs`` where Linux allows it; elsewhere the raw peak of the process is
reported, which includes the interpreter and torch).

The default sizes add 128 and 384 to the three of interest so that the naive implementation has three measured
points. On 2 CPU cores the whole default run takes about 15 minutes, most of it the 768 forward+backward case.

Usage::

    python scripts/benchmark_agf_memory.py --out agf_memory.json
    python scripts/benchmark_agf_memory.py --sizes 128 256 --channels 64 --heads 2
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

from ivgf_hf.modeling.fusion_ivgf import IVGFAttentionGuidedFusion

IMPLEMENTATIONS = ("sdpa", "naive")
PASSES = ("forward", "forward+backward")


class NaiveAttentionFusion(IVGFAttentionGuidedFusion):
    """The AGF module with the attention matrix materialised: the reference for the memory comparison."""

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        scores = query @ key.transpose(-2, -1) * query.shape[-1] ** -0.5
        return scores.softmax(dim=-1) @ value


def naive_estimate_bytes(tokens: int, batch: int, heads: int, pass_name: str) -> int:
    """Rough peak of the naive attention: scores and probabilities of one direction (forward), or the saved
    probabilities of both directions plus the backward's temporaries (forward+backward), fp32."""
    matrix = batch * heads * tokens * tokens * 4
    return matrix * (2 if pass_name == "forward" else 5)


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))


def _reset_peak_rss() -> bool:
    """Reset the peak-RSS mark to the current RSS (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def run_case(case: dict) -> dict:
    """Measure one case in this process; returns the case with ``peak_increase_bytes`` and ``seconds``."""
    device = torch.device(case["device"])
    torch.manual_seed(0)
    cls = NaiveAttentionFusion if case["implementation"] == "naive" else IVGFAttentionGuidedFusion
    agf = cls(case["channels"], case["heads"]).to(device)
    with torch.no_grad():
        for param in agf.parameters():
            param.normal_(std=0.02)
    backward = case["pass"] == "forward+backward"

    def step(side: int):
        shape = (case["batch"], case["channels"], side, side)
        visible = torch.randn(shape, device=device, requires_grad=backward)
        infrared = torch.randn(shape, device=device, requires_grad=backward)
        with torch.set_grad_enabled(backward):
            out = agf(visible, infrared)
            if backward:
                out.square().mean().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()

    step(8)  # warm-up: kernels, thread pools, allocator
    agf.zero_grad(set_to_none=True)
    side = case["size"] // case["stride"]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        start = time.perf_counter()
        step(side)
        seconds = time.perf_counter() - start
        increase = torch.cuda.max_memory_allocated(device) - before
        method = "cuda max_memory_allocated"
    else:
        reset = _reset_peak_rss()
        before = _rss_kib() * 1024 if reset else 0
        start = time.perf_counter()
        step(side)
        seconds = time.perf_counter() - start
        increase = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
        method = "peak RSS increase" if reset else "peak RSS of the process"
    return {**case, "peak_increase_bytes": increase, "seconds": round(seconds, 3), "method": method}


def run_in_subprocess(case: dict, timeout: float) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--case", json.dumps(case)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**case, "skipped": f"timed out after {timeout:.0f} s"}
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["no error output"])[-1]
        return {**case, "skipped": f"failed (exit {result.returncode}): {tail}"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def format_table(results: list) -> str:
    header = f"{'size':>5} {'tokens':>7} {'impl':>6} {'pass':>17} {'peak MiB':>10} {'x smallest':>10} {'seconds':>8}"
    lines = [header, "-" * len(header)]
    smallest = {}
    for row in results:
        key = (row["implementation"], row["pass"])
        tokens = (row["size"] // row["stride"]) ** 2
        if "skipped" in row:
            lines.append(
                f"{row['size']:>5} {tokens:>7} {row['implementation']:>6} {row['pass']:>17}   skipped: {row['skipped']}"
            )
            continue
        mib = row["peak_increase_bytes"] / 2**20
        base = smallest.setdefault(key, (tokens, mib))
        growth = f"{mib / base[1]:.1f}" if base[1] > 0 else "-"
        lines.append(
            f"{row['size']:>5} {tokens:>7} {row['implementation']:>6} {row['pass']:>17} {mib:>10.1f} {growth:>10} "
            f"{row['seconds']:>8.2f}"
        )
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 384, 512, 768], help="image sizes (px)")
    parser.add_argument("--stride", type=int, default=4, help="feature stride of the fused scale (default 4)")
    parser.add_argument("--channels", type=int, default=256, help="channels of the fused scale (default 256)")
    parser.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--max-naive-gib", type=float, default=8.0, help="skip naive cases estimated above this")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: cuda if available")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per case (default 900)")
    parser.add_argument("--out", help="write the results as JSON to this file")
    parser.add_argument("--overwrite", action="store_true", help="allow --out to replace an existing file")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("stride", "channels", "heads", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be positive, got {getattr(args, name)}")
    if args.channels % args.heads:
        parser.error(f"--channels ({args.channels}) must be a multiple of --heads ({args.heads})")
    bad = [size for size in args.sizes if size < args.stride or size % args.stride]
    if bad:
        parser.error(f"--sizes {bad} are not positive multiples of --stride {args.stride}")
    if args.out and os.path.exists(args.out) and not args.overwrite:
        parser.error(f"--out {args.out} exists; pass --overwrite to replace it")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was requested but CUDA is not available")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    results = []
    for implementation in IMPLEMENTATIONS:
        for pass_name in PASSES:
            for size in args.sizes:
                case = {
                    "implementation": implementation,
                    "pass": pass_name,
                    "size": size,
                    "stride": args.stride,
                    "channels": args.channels,
                    "heads": args.heads,
                    "batch": args.batch,
                    "device": device,
                }
                tokens = (size // args.stride) ** 2
                estimate = naive_estimate_bytes(tokens, args.batch, args.heads, pass_name)
                if implementation == "naive" and estimate > args.max_naive_gib * 2**30:
                    results.append({**case, "skipped": f"naive estimate {estimate / 2**30:.1f} GiB > --max-naive-gib"})
                else:
                    results.append(run_in_subprocess(case, args.timeout))
                print(format_table(results).splitlines()[-1], flush=True)
    print()
    print(f"AGF peak memory on {device}: channels {args.channels}, heads {args.heads}, batch {args.batch}, "
          f"stride {args.stride} (peak increase over the memory in use before the pass)")
    print(format_table(results))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=2)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
