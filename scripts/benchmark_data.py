"""Throughput of the RGB-T input pipeline: decoding, training augmentation, and a multi-worker DataLoader.

Writes SynthRGBT data at 480x640 to a temporary folder, loads it with the real loaders and measures pairs per
second for segmentation (MFNet layout, 512x512 crops, photometric distortion + cutout&mix) and detection (M3FD
layout, 512x512 crops). Prints a table; ``--out results.json`` also writes the numbers.

    python scripts/benchmark_data.py [--pairs 48] [--workers 2] [--out benchmark.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ivgf_hf.data import (
    DetectionTrainTransform,
    SegmentationTrainTransform,
    collate_detection,
    collate_segmentation,
    generate_synthrgbt,
    load_m3fd,
    load_mfnet,
)


def _rate(count, seconds):
    return count / seconds if seconds > 0 else float("inf")


def _decode_rate(dataset, columns):
    start = time.perf_counter()
    for row in dataset:
        for column in columns:
            row[column].load()
    return _rate(len(dataset), time.perf_counter() - start)


def _transform_rate(dataset, transform):
    data = dataset.with_transform(transform)
    start = time.perf_counter()
    for index in range(len(data)):
        data[index]
    return _rate(len(data), time.perf_counter() - start)


def _loader_rate(dataset, transform, collate, workers, batch_size, epochs):
    loader = DataLoader(
        dataset.with_transform(transform),
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        collate_fn=collate,
        persistent_workers=workers > 0,
        drop_last=True,
    )
    for _ in loader:  # first epoch starts the workers
        pass
    start, pairs = time.perf_counter(), 0
    for _ in range(epochs):
        for batch in loader:
            pairs += batch["pixel_values"].shape[0]
    return _rate(pairs, time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=48, help="pairs of SynthRGBT data to generate per task")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--crop", type=int, default=512)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="timed DataLoader epochs after a warm-up epoch")
    parser.add_argument("--out", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # one thread per process, as in DataLoader workers

    results = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "load_average_1min_at_start": os.getloadavg()[0],
        },
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    size = dict(num_train=args.pairs, num_test=0, height=args.height, width=args.width, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        tasks = {
            "segmentation": (
                lambda root: load_mfnet(root)["train"],
                "mfnet",
                SegmentationTrainTransform(crop_size=args.crop),
                collate_segmentation,
                ("visible", "infrared", "label"),
            ),
            "detection": (
                lambda root: load_m3fd(root, split_files={"train": Path(root) / "meta" / "train.txt"})["train"],
                "m3fd",
                DetectionTrainTransform(crop_size=args.crop),
                collate_detection,
                ("visible", "infrared"),
            ),
        }
        for task, (load, layout, transform, collate, columns) in tasks.items():
            start = time.perf_counter()
            root = generate_synthrgbt(Path(tmp) / layout, layout, **size)
            generated = time.perf_counter() - start
            start = time.perf_counter()
            dataset = load(root)
            loaded = time.perf_counter() - start
            results[task] = {
                "generate_pairs_per_s": _rate(args.pairs, generated),
                "load_and_validate_pairs_per_s": _rate(args.pairs, loaded),
                "decode_pairs_per_s_1_process": _decode_rate(dataset, columns),
                "decode_and_augment_pairs_per_s_1_process": _transform_rate(dataset, transform),
                f"dataloader_pairs_per_s_{args.workers}_workers": _loader_rate(
                    dataset, transform, collate, args.workers, args.batch_size, args.epochs
                ),
            }

    print(
        f"RGB-T input pipeline, {args.height}x{args.width} -> {args.crop}x{args.crop} crops, "
        f"{os.cpu_count()} CPU cores ({platform.machine()}), load average at start "
        f"{results['machine']['load_average_1min_at_start']:.1f}"
    )
    for task in ("segmentation", "detection"):
        print(f"\n{task}")
        for key, value in results[task].items():
            print(f"  {key:<44} {value:8.1f}")
    demand = (2 * 3, 2 * 5)
    print(
        f"\nA GPU training step at batch 2 and 3-5 steps/s consumes {demand[0]}-{demand[1]} pairs/s; "
        f"the goal is 4x that: {4 * demand[0]}-{4 * demand[1]} pairs/s."
    )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
