"""Build a preset (default: the paper's `base`), count its parameters and time one forward on the CPU.

    python scripts/base_forward.py --preset base --task segmentation --size 512

Prints the parameter count by part, the forward time and the peak resident memory of this process.
"""

import argparse
import json
import resource
import time

import torch

from ivgf_hf import get_config
from ivgf_hf.benchmark import parameter_counts
from ivgf_hf.modeling import IVGFForSemanticSegmentation


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="base")
    parser.add_argument("--task", choices=["segmentation"], default="segmentation")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--num-labels", type=int, default=9)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = get_config(args.preset, num_labels=args.num_labels)
    model = IVGFForSemanticSegmentation(config).eval()
    counts = parameter_counts(model)
    pixel_values = torch.randn(1, 3, args.size, args.size)
    pixel_values_ir = torch.randn(1, config.num_channels_ir, args.size, args.size)
    with torch.inference_mode():
        start = time.perf_counter()
        logits = model(pixel_values, pixel_values_ir).logits
        seconds = time.perf_counter() - start
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {
        "preset": args.preset,
        "input": [1, 3, args.size, args.size],
        "logits": list(logits.shape),
        "parameters": counts,
        "forward_seconds": round(seconds, 2),
        "threads": args.threads,
        "peak_rss_mib": round(peak_rss_mib),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
