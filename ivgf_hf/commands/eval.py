"""``ivgf eval``: evaluate a saved IVGF model on a data set (protocols x day / night), write JSON, markdown, PNGs.

Runs on one process, or on several with ``accelerate launch`` / ``torchrun`` (each process evaluates a shard;
the metrics are summed across processes and the main process writes the files).
"""

import os
from pathlib import Path

from ..threads import add_threads_argument

__all__ = ["register", "add_inference_arguments", "parse_scales", "DATASETS"]

DATASETS = ("mfnet", "msrs", "m3fd", "synthrgbt", "paired")


def parse_scales(text: str) -> list:
    """``"0.75,1,1.25"`` -> ``[0.75, 1.0, 1.25]``."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise SystemExit(f"--tta-scales must be comma-separated numbers, got {text!r}") from None
    return values


def add_inference_arguments(parser) -> None:
    """The segmentation inference options shared by ``ivgf eval`` and ``ivgf predict``."""
    parser.add_argument(
        "--sliding-window",
        metavar="CROP,STRIDE",
        help="segmentation: sliding-window inference with square windows of CROP pixels every STRIDE pixels "
        "(e.g. 512,341); default whole-image inference",
    )
    parser.add_argument("--tta-flip", action="store_true", help="segmentation: add horizontally flipped views")
    parser.add_argument(
        "--tta-scales", default="1", metavar="S1,S2,...", help="segmentation: input scales averaged (e.g. 0.75,1,1.25)"
    )


def _synthrgbt(root: Path, split: str, split_out: Path):
    """A SynthRGBT folder in whichever layout it was generated."""
    from ..data import load_m3fd, load_mfnet, load_msrs

    if (root / "images").is_dir() or (root / "RGB").is_dir():
        return load_mfnet(root, splits=[split])
    if (root / "train" / "vi").is_dir() or (root / "test" / "vi").is_dir():
        return load_msrs(root)
    meta = root / "meta"
    lists = {s: meta / f"{s}.txt" for s in ("train", "test", "val") if (meta / f"{s}.txt").is_file()}
    return load_m3fd(root, split_files=lists or None, split_out=split_out)


def _paired(root: Path, split: str, class_names: list, task: str):
    from ..data import load_paired_folder

    folders = {name: root / name for name in ("visible", "infrared", "labels", "annotations")}
    absent = [str(folders[name]) for name in ("visible", "infrared") if not folders[name].is_dir()]
    target = "labels" if task == "segmentation" else "annotations"
    if not folders[target].is_dir():
        absent.append(str(folders[target]))
    if absent:
        raise SystemExit(
            f"ivgf eval --dataset paired: missing folder(s) {', '.join(absent)}; expected <root>/visible, "
            f"<root>/infrared and <root>/{target}"
        )
    if task == "segmentation":
        return load_paired_folder(
            folders["visible"], folders["infrared"], labels_dir=folders["labels"], split=split, class_names=class_names
        )
    return load_paired_folder(
        folders["visible"],
        folders["infrared"],
        annotations_dir=folders["annotations"],
        split=split,
        class_names=class_names,
    )


def _load_split(args, class_names: list, task: str):
    from ..data import load_m3fd, load_mfnet, load_msrs

    root = Path(args.data_root)
    if args.dataset == "mfnet":
        splits = load_mfnet(root, splits=[args.split])
    elif args.dataset == "msrs":
        splits = load_msrs(root)
    elif args.dataset == "m3fd":
        split_files = {args.split: args.split_file} if args.split_file else None
        splits = load_m3fd(root, split_files=split_files, seed=args.seed, split_out=args.out)
    elif args.dataset == "synthrgbt":
        splits = _synthrgbt(root, args.split, Path(args.out))
    else:
        splits = _paired(root, args.split, class_names, task)
    if args.split not in splits:
        raise SystemExit(f"ivgf eval: {root} has no split {args.split!r}; available: {', '.join(splits)}")
    return splits[args.split]


def _accelerator():
    """An Accelerator when launched on several processes (accelerate launch / torchrun), else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import Accelerator

    return Accelerator()


def _eval(args) -> int:
    from ..evaluation.runner import evaluate_model, report_paths, results_to_markdown, write_evaluation_report
    from ..inference import PROTOCOLS, load_model_and_processor, model_task

    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise SystemExit(f"ivgf eval: --protocols takes names among {', '.join(PROTOCOLS)}; got {args.protocols!r}")
    accelerator = _accelerator()
    try:
        model, processor = load_model_and_processor(args.model)
    except (OSError, ValueError) as error:
        raise SystemExit(f"ivgf eval: cannot load the model {args.model}: {error}") from None
    task = model_task(model)
    existing = [str(p) for p in report_paths(args.out, task).values() if p.exists()]
    if existing and not args.overwrite:
        raise SystemExit(f"ivgf eval: {', '.join(existing)} already exist(s); pass --overwrite to replace")
    class_names = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
    try:
        dataset = _load_split(args, class_names, task)
    except (OSError, ValueError) as error:  # layout errors, broken samples, bad split lists: name the problem
        raise SystemExit(f"ivgf eval: {error}") from None
    result = evaluate_model(
        model,
        dataset,
        task=task,
        processor=processor,
        batch_size=args.batch_size,
        protocols=protocols,
        max_samples=args.max_samples,
        accelerator=accelerator,
        sliding_window=args.sliding_window,
        tta_flip=args.tta_flip,
        tta_scales=parse_scales(args.tta_scales),
    )
    if accelerator is not None and not accelerator.is_main_process:
        return 0
    title = f"{Path(str(args.model)).name} on {args.dataset} {args.split}"
    paths = write_evaluation_report(result, args.out, overwrite=args.overwrite, title=title)
    print(results_to_markdown(result))
    print("wrote " + ", ".join(str(path) for path in paths.values()))
    return 0


def register(commands) -> None:
    parser = commands.add_parser(
        "eval",
        help="evaluate a model: mIoU / mAP per missing-modality protocol and day / night, with plots",
        description="Evaluate a saved IVGF model (folder or Hub id) on a data set split. Writes metrics.json, "
        "metrics.md, the per-class bar chart and (segmentation) the confusion matrix into --out, and prints the "
        "markdown tables.",
    )
    parser.add_argument("--model", required=True, help="model folder or Hub id")
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument(
        "--data-root",
        required=True,
        help="data set folder (paired: a folder with visible/, infrared/ and labels/ or annotations/)",
    )
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--split-file", help="m3fd: list of the split's names (default: a seeded split)")
    parser.add_argument("--seed", type=int, default=0, help="m3fd: seed of the default split")
    parser.add_argument(
        "--protocols",
        default="none",
        help="comma-separated missing-modality protocols: none, visible_missing, infrared_missing (default: none)",
    )
    add_inference_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=2, help="pairs per forward pass (default: 2)")
    parser.add_argument("--max-samples", type=int, help="evaluate only the first N samples")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    add_threads_argument(parser)
    parser.set_defaults(handler=_eval)
