"""Peak memory of one attention-guided fusion (AGF) pass: ``scaled_dot_product_attention`` vs naive attention.

Each case (image size, attention implementation, pass) runs in a fresh subprocess. The AGF module works on the
stride-4 maps of an image of the given size (256 -> 64 x 64 = 4,096 tokens, 512 -> 16,384, 768 -> 36,864), with
the base model's stride-4 channels (256) and heads (4). The naive implementation writes out
softmax(Q K^T / sqrt(d)) V and is skipped where its attention matrices would exceed ``--max-naive-gib``.

Memory is the increase of the peak over the memory in use just before the pass: on CUDA
``torch.cuda.max_memory_allocated``; on the CPU the peak resident set size (its mark reset to the current RSS
through ``/proc/self/clear_refs`` where Linux allows it; elsewhere the raw peak of the process is reported, which
includes the interpreter and torch). The measurement itself is ``ivgf_hf.benchmark.measure_agf_case``, shared
with ``ivgf benchmark`` (whose AGF section runs the same cases for a preset's stride-4 fusion).

The default sizes add 128 and 384 to the three of interest so that the naive implementation has three measured
points. On 2 CPU cores the whole default run takes about 15 minutes, most of it the 768 forward+backward case.

Usage::

    python scripts/benchmark_agf_memory.py --out agf_memory.json
    python scripts/benchmark_agf_memory.py --sizes 128 256 --channels 64 --heads 2
"""

import argparse
import json
import os

import torch

from ivgf_hf.benchmark import (
    AGF_IMPLEMENTATIONS,
    AGF_PASSES,
    agf_memory_markdown,
    naive_attention_estimate_bytes,
    run_in_subprocess,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 384, 512, 768], help="image sizes (px)")
    parser.add_argument("--stride", type=int, default=4, help="feature stride of the fused scale (default 4)")
    parser.add_argument("--channels", type=int, default=256, help="channels of the fused scale (default 256)")
    parser.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16 = bf16 autocast")
    parser.add_argument("--max-naive-gib", type=float, default=8.0, help="skip naive cases estimated above this")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: cuda if available")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per case (default 900)")
    parser.add_argument("--out", help="write the results as JSON to this file")
    parser.add_argument("--overwrite", action="store_true", help="allow --out to replace an existing file")
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
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    element_size = 2 if args.dtype == "bf16" else 4
    results = []
    for implementation in AGF_IMPLEMENTATIONS:
        for pass_name in AGF_PASSES:
            for size in args.sizes:
                case = {
                    "kind": "agf",
                    "implementation": implementation,
                    "pass": pass_name,
                    "size": size,
                    "stride": args.stride,
                    "channels": args.channels,
                    "heads": args.heads,
                    "batch": args.batch,
                    "device": device,
                    "dtype": args.dtype,
                }
                tokens = (size // args.stride) ** 2
                estimate = naive_attention_estimate_bytes(tokens, args.batch, args.heads, pass_name, element_size)
                if implementation == "naive" and estimate > args.max_naive_gib * 2**30:
                    results.append({**case, "skipped": f"naive estimate {estimate / 2**30:.1f} GiB > --max-naive-gib"})
                else:
                    results.append({**case, **run_in_subprocess(case, args.timeout)})
                print(agf_memory_markdown(results).splitlines()[-1], flush=True)
    print()
    print(
        f"AGF peak memory on {device}: channels {args.channels}, heads {args.heads}, batch {args.batch}, "
        f"stride {args.stride}, {args.dtype} (peak increase over the memory in use before the pass)"
    )
    print(agf_memory_markdown(results))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=2)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
