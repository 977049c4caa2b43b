"""``ivgf ablate``: the paper's Table IV rows and the baselines on SynthRGBT over several seeds (mean +- std)."""

from ..threads import add_threads_argument
from .quickstart import TASKS, add_synthrgbt_arguments, positive_int

__all__ = ["register"]

# ivgf_hf.ablation.ROWS / REGIMES / DEFAULT_ROWS, repeated so that `ivgf --help` imports no torch.
_ROWS = (
    "sum",
    "fem",
    "agf",
    "tem",
    "cma",
    "fem_agf",
    "fem_tem",
    "agf_tem",
    "ivgf",
    "ivgf_cma",
    "ivgf_literal",
    "ivgf_no_fan_init",
    "ivgf_fast_tem",
    "ivgf_merge_norm",
    "ivgf_modality_aux",
    "sum_modality_aux",
    "ivgf_global_agf",
    "visible_only",
    "infrared_only",
)
_DEFAULT_ROWS = ("ivgf", "sum", "visible_only", "infrared_only")
_TABLE_IV = ("sum", "fem", "agf", "tem", "cma", "fem_agf", "fem_tem", "agf_tem", "ivgf", "ivgf_cma")
_REGIMES = ("scratch", "pretrained")


def _ablate(args) -> int:
    from ..ablation import run_ablation

    rows = list(args.rows)
    if args.table_iv:
        rows = list(dict.fromkeys(list(_TABLE_IV) + rows))
    regimes = list(_REGIMES) if args.regime == "both" else [args.regime]
    try:
        run_ablation(
            args.out,
            task=args.task,
            rows=rows,
            seeds=list(range(args.first_seed, args.first_seed + args.seeds)),
            regimes=regimes,
            steps=args.steps,
            jobs=args.jobs,
            num_train=args.num_train,
            num_test=args.num_test,
            height=args.height,
            width=args.width,
            data_seed=args.data_seed,
            impairments=args.impairments,
        )
    except (FileExistsError, ValueError) as error:
        raise SystemExit(f"ivgf ablate: {error}") from None
    return 0


def register(commands) -> None:
    parser = commands.add_parser(
        "ablate",
        help="train the Table IV rows and the baselines on SynthRGBT over N seeds; mean +- std table",
        description="Generate SynthRGBT once, train every requested row (fusion ablations, single-modality "
        "baselines, the literal paper form) for every seed with the synth-seg-cpu recipe, evaluate by day / night "
        "and write ablation.md / .json / .png. Finished cells are kept in --out/cells, so a rerun continues and can "
        "add rows or seeds. --regime pretrained starts the fused rows from the single-modality models' encoders. "
        "--task detection gives Table IV's detection column: SynthRGBT in the M3FD layout, the synth-det-cpu "
        "recipe, mAP50-95 and mAP50 by day / night, in its own --out folder.",
    )
    parser.add_argument(
        "--task",
        choices=TASKS,
        default="segmentation",
        help="segmentation (mIoU; default) or detection (mAP50-95 / mAP50)",
    )
    parser.add_argument("--out", help="output folder (default: ./ivgf-ablation, detection: ./ivgf-ablation-detection)")
    parser.add_argument(
        "--rows",
        nargs="+",
        choices=_ROWS,
        default=list(_DEFAULT_ROWS),
        metavar="ROW",
        help=f"rows to train (default: {' '.join(_DEFAULT_ROWS)}); choices: {', '.join(_ROWS)}",
    )
    parser.add_argument("--table-iv", action="store_true", help="add every Table IV row (baseline ... IVGF + CMA)")
    parser.add_argument("--seeds", type=positive_int, default=3, help="number of training seeds (default: 3)")
    parser.add_argument("--first-seed", type=int, default=0, help="first training seed (default: 0)")
    parser.add_argument(
        "--regime",
        choices=(*_REGIMES, "both"),
        default="scratch",
        help="scratch, pretrained (encoders from the single-modality models) or both",
    )
    parser.add_argument(
        "--steps",
        type=positive_int,
        help="optimizer steps per model (default: the recipe's, 800 for segmentation, 700 for detection)",
    )
    parser.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        help="models trained at once, each with cores / jobs threads (default: 1)",
    )
    data = add_synthrgbt_arguments(parser)
    data.add_argument("--data-seed", type=int, default=0, help="seed of the data (default: 0)")
    add_threads_argument(parser)
    parser.set_defaults(handler=_ablate)
