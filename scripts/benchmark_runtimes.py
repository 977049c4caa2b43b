"""CPU inference latency of one IVGF segmentation model in four runtimes, in one process, printed as markdown.

Runtimes: PyTorch eager (float32), ``torch.compile`` (inductor), eager under ``torch.autocast("cpu", bfloat16)``,
and onnxruntime (CPU provider) on the graph written by ``ivgf_hf.onnx_export``. Each runs ``--warmup`` calls, then
``--runs`` timed calls on the same seeded input; the median and the ratio to eager are printed with the largest
logit difference to eager.

    python scripts/benchmark_runtimes.py --presets tiny --height 128 --width 160 --threads 2
"""

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ivgf_hf.modeling import IVGFForSemanticSegmentation
from ivgf_hf.onnx_export import SegmentationLogits, example_inputs, export_onnx
from ivgf_hf.presets import get_config


def _median_ms(call, warmup: int, runs: int) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _runtimes(model, inputs, folder: Path) -> dict:
    """``{name: callable returning logits as a float32 tensor}``; onnxruntime's file is written to ``folder``."""
    import onnxruntime

    module = SegmentationLogits(model).eval()
    compiled = torch.compile(module)

    def autocast():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return module(*inputs).float()

    path = export_onnx(model, folder / "model.onnx", example_size=tuple(inputs[0].shape[-2:])).path
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"pixel_values": inputs[0].numpy(), "pixel_values_ir": inputs[1].numpy()}
    return {
        "eager fp32": lambda: module(*inputs),
        "torch.compile fp32": lambda: compiled(*inputs),
        "eager bf16 autocast": autocast,
        "onnxruntime fp32": lambda: torch.from_numpy(session.run(["logits"], feed)[0]),
    }


def measure(preset: str, height: int, width: int, batch_size: int, warmup: int, runs: int) -> list:
    """One row per runtime: ``{"preset", "runtime", "ms", "ratio", "max_abs_diff"}``."""
    config = get_config(preset, num_labels=9)
    model = IVGFForSemanticSegmentation(config).eval()
    inputs = example_inputs(config, batch_size, height, width)
    rows = []
    with torch.inference_mode(), tempfile.TemporaryDirectory() as folder:
        reference = SegmentationLogits(model)(*inputs)
        for name, call in _runtimes(model, inputs, Path(folder)).items():
            diff = float((call().float() - reference).abs().max())
            rows.append({"preset": preset, "runtime": name, "ms": _median_ms(call, warmup, runs), "max_abs_diff": diff})
    eager = rows[0]["ms"]
    for row in rows:
        row["ratio"] = row["ms"] / eager
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny"], help="model presets (default: tiny)")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--threads", type=int, help="torch and onnxruntime intra-op threads (default: ivgf_hf.threads)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)

    from ivgf_hf.threads import available_cpus, configure_threads

    threads = configure_threads(args.threads)
    import onnxruntime

    print(
        f"machine: {platform.processor() or platform.machine()}, {available_cpus()} available cores, "
        f"{threads} threads; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}"
    )
    print(
        f"input: batch {args.batch_size}, {args.height}x{args.width}; median of {args.runs} runs after "
        f"{args.warmup} warm-up calls\n"
    )
    print("| preset | runtime | median ms | vs eager | max abs logit diff vs eager |")
    print("|---|---|---|---|---|")
    for preset in args.presets:
        for row in measure(preset, args.height, args.width, args.batch_size, args.warmup, args.runs):
            print(
                f"| {row['preset']} | {row['runtime']} | {row['ms']:.1f} | {row['ratio']:.2f}x | "
                f"{row['max_abs_diff']:.1e} |"
            )


if __name__ == "__main__":
    main()
