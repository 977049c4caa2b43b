"""Build the detector of a preset (default: the paper's `base`), time one eval-mode forward on the CPU.

    python scripts/base_detection_forward.py --size 896 --num-labels 6

Prints a JSON report: parameters by part, the forward time (split into the IVGF trunk and the FPN + RPN + RoI
heads), the number of detections and the peak resident memory of this process (Linux ``ru_maxrss``, which
includes the Python interpreter and the loaded libraries).
"""

import argparse
import json
import resource
import time

import torch

from ivgf_hf import get_config
from ivgf_hf.benchmark import parameter_counts
from ivgf_hf.modeling.detection_ivgf import IVGFForObjectDetection


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="base")
    parser.add_argument("--size", type=int, default=896, help="square input side in pixels (divisible by 16)")
    parser.add_argument("--num-labels", type=int, default=6, help="object classes (M3FD has 6)")
    parser.add_argument("--mask-head", action="store_true", help="build the optional mask branch too")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = get_config(args.preset, num_labels=args.num_labels, use_mask_head=args.mask_head)
    start = time.perf_counter()
    model = IVGFForObjectDetection(config).eval()
    build_seconds = time.perf_counter() - start
    generator = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(1, config.num_channels, args.size, args.size, generator=generator)
    pixel_values_ir = torch.randn(1, config.num_channels_ir, args.size, args.size, generator=generator)
    marks = {}

    def mark_trunk_done(module, inputs):
        marks["trunk_done"] = time.perf_counter()

    model.fpn.register_forward_pre_hook(mark_trunk_done)
    with torch.inference_mode():
        start = time.perf_counter()
        detections = model(pixel_values, pixel_values_ir).detections
        seconds = time.perf_counter() - start
    trunk_seconds = marks["trunk_done"] - start
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {
        "preset": args.preset,
        "input": [1, config.num_channels, args.size, args.size],
        "num_labels": args.num_labels,
        "mask_head": args.mask_head,
        "parameters": parameter_counts(model),
        "build_seconds": round(build_seconds, 2),
        "forward_seconds": round(seconds, 2),
        "trunk_seconds": round(trunk_seconds, 2),
        "detection_heads_seconds": round(seconds - trunk_seconds, 2),
        "detections": len(detections[0]["scores"]),
        "threads": args.threads,
        "torch": torch.__version__,
        "peak_rss_mib": round(peak_rss_mib),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
