"""``ivgf quickstart``: SynthRGBT, a small IVGF (segmenter or detector) trained on the CPU, its evaluation, model
folder and overlays."""

from ..threads import add_threads_argument

__all__ = ["register"]

TASKS = ("segmentation", "detection")  # ivgf_hf.quickstart.TASKS, repeated so that `ivgf --help` imports no torch


def _quickstart(args) -> int:
    from ..quickstart import run_quickstart

    try:
        run_quickstart(
            args.out,
            task=args.task,
            compare=args.compare,
            seeds=args.seeds,
            impairments=args.impairments,
            steps=args.steps,
            overwrite=args.overwrite,
            num_train=args.num_train,
            num_test=args.num_test,
            height=args.height,
            width=args.width,
            seed=args.seed,
            num_predictions=args.num_predictions,
            export_check=not args.no_export_check,
        )
    except (FileExistsError, NotADirectoryError) as error:
        raise SystemExit(f"ivgf quickstart: {error}") from None
    return 0


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def add_synthrgbt_arguments(parser):
    """The SynthRGBT options shared by ``ivgf quickstart`` and ``ivgf ablate``; returns their argument group."""
    data = parser.add_argument_group("SynthRGBT")
    data.add_argument("--num-train", type=positive_int, default=192, help="training pairs (default: 192)")
    data.add_argument("--num-test", type=positive_int, default=48, help="test pairs, half at night (default: 48)")
    data.add_argument("--height", type=positive_int, default=240, help="image height in pixels (default: 240)")
    data.add_argument("--width", type=positive_int, default=320, help="image width in pixels (default: 320)")
    data.add_argument(
        "--impairments",
        default="realistic",
        help="'realistic' (glare, thermal crossover, sensor dropout, misregistration) or 'none' "
        "(the original world); default: realistic",
    )
    return data


def register(commands) -> None:
    parser = commands.add_parser(
        "quickstart",
        help="generate SynthRGBT, train a small IVGF on the CPU (~5 min), evaluate it and write the model",
        description="Generate the synthetic RGB-T data set SynthRGBT, train the tiny IVGF on the CPU with the "
        "synth-seg-cpu recipe, evaluate it per missing modality (paper Table VI) and day / night, and write the "
        "model folder, metrics, plots and overlay PNGs. --compare also trains the visible-only, infrared-only and "
        "sum-fusion baselines on the same budget and prints where fusion wins. --task detection does the same for "
        "the detector: SynthRGBT in the M3FD layout, the synth-det-cpu recipe, mAP50-95 / mAP50 and box pictures.",
    )
    parser.add_argument("--task", choices=TASKS, default="segmentation", help="segmentation (default) or detection")
    parser.add_argument(
        "--out", help="output folder (default: ./ivgf-quickstart, detection: ./ivgf-quickstart-detection)"
    )
    parser.add_argument("--compare", action="store_true", help="also train and compare the three baselines")
    parser.add_argument(
        "--seeds",
        type=positive_int,
        default=1,
        help="with --compare: train every model for this many seeds and print mean ± std (default: 1)",
    )
    parser.add_argument(
        "--steps",
        type=positive_int,
        help="optimizer steps per model (default: the recipe's, 800 for segmentation, 700 for detection)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a previous quickstart run in --out")
    data = add_synthrgbt_arguments(parser)
    data.add_argument("--seed", type=int, default=0, help="seed of the data and of training (default: 0)")
    parser.add_argument("--num-predictions", type=positive_int, default=6, help="test images drawn (default: 6)")
    parser.add_argument(
        "--no-export-check",
        action="store_true",
        help="skip loading the exported model as remote code in a fresh process (saves a few seconds)",
    )
    add_threads_argument(parser)
    parser.set_defaults(handler=_quickstart)
