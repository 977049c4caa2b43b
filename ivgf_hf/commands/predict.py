"""``ivgf predict``: segmentation masks and overlays, or detection boxes, for image pairs, as PNG files.

Inputs: one pair (``--visible A --infrared B``), two folders paired by file name (``--visible-dir``,
``--infrared-dir``), or MFNet's 4-channel RGB+T PNGs (``--rgbt F`` / ``--rgbt-dir D``). Every input is checked
(pairing, readability, sizes) and every output path is checked against existing files before the first
prediction; the pairing, checks and PNG writing live in :mod:`ivgf_hf.prediction`.
"""

from ..prediction import PredictInputError, collect_pairs, predict_pairs
from ..threads import add_threads_argument
from .eval import add_inference_arguments, parse_scales

__all__ = ["register"]


def _predict(args) -> int:
    from ..inference import load_model_and_processor, model_task

    try:
        pairs = collect_pairs(
            args.visible, args.infrared, args.visible_dir, args.infrared_dir, args.rgbt, args.rgbt_dir
        )
        try:
            model, processor = load_model_and_processor(args.model, device=args.device)
        except (OSError, ValueError) as error:
            raise PredictInputError(f"cannot load the model {args.model}: {error}") from None
        task = model_task(model)
        if task == "detection" and (args.sliding_window or args.tta_flip or parse_scales(args.tta_scales) != [1.0]):
            raise PredictInputError("--sliding-window, --tta-flip and --tta-scales apply to segmentation models only")
        written = predict_pairs(
            model,
            processor,
            pairs,
            args.out,
            task=task,
            overwrite=args.overwrite,
            threshold=args.threshold,
            sliding_window=args.sliding_window,
            tta_flip=args.tta_flip,
            tta_scales=parse_scales(args.tta_scales),
        )
    except PredictInputError as error:
        raise SystemExit(f"ivgf predict: {error}") from None
    print(f"wrote {len(written)} PNG file(s) for {len(pairs)} pair(s) to {args.out}")
    return 0


def register(commands) -> None:
    parser = commands.add_parser(
        "predict",
        help="predict masks / boxes for image pairs and write PNGs",
        description="Run a saved IVGF model (folder or Hub id) on aligned visible + infrared pairs. Segmentation "
        "writes <name>_mask.png (colour-coded with the data set's palette) and <name>_overlay.png; detection "
        "writes <name>_boxes.png (boxes with class and score). Existing files are kept unless --overwrite.",
    )
    parser.add_argument("--model", required=True, help="model folder or Hub id")
    parser.add_argument("--visible", help="visible image of one pair")
    parser.add_argument("--infrared", help="infrared image of one pair")
    parser.add_argument("--visible-dir", help="folder of visible images (paired with --infrared-dir by name)")
    parser.add_argument("--infrared-dir", help="folder of infrared images")
    parser.add_argument("--rgbt", help="one MFNet 4-channel RGB+T PNG")
    parser.add_argument("--rgbt-dir", help="folder of MFNet 4-channel RGB+T PNGs")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--threshold", type=float, default=0.5, help="detection: minimum score drawn (default 0.5)")
    parser.add_argument("--device", help="torch device (default: the model's, CPU)")
    add_inference_arguments(parser)
    add_threads_argument(parser)
    parser.set_defaults(handler=_predict)
