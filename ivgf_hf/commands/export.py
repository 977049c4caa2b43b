"""``ivgf export``: write a saved IVGF model as an ONNX graph and check it in onnxruntime against PyTorch."""

from ..threads import add_threads_argument

__all__ = ["register"]

_FORMATS = ("onnx",)


def _size(text: str) -> tuple:
    """``"96x128"`` -> ``(96, 128)``."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"ivgf export: sizes are HEIGHTxWIDTH (e.g. 96x128), got {text!r}") from None
    return height, width


def _export(args) -> int:
    from pathlib import Path

    from ..inference import load_model_and_processor
    from ..onnx_export import export_onnx, onnx_parity

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise SystemExit(f"ivgf export: {out} already exists; pass --overwrite to replace it")
    try:
        model, _ = load_model_and_processor(args.model)
    except (OSError, ValueError) as error:
        raise SystemExit(f"ivgf export: cannot load the model {args.model}: {error}") from None
    sizes = [_size(text) for text in args.check_sizes.split(",")] if args.check_sizes else []
    try:
        result = export_onnx(model, out, part=args.part, opset=args.opset, example_size=_size(args.example_size))
    except ValueError as error:
        raise SystemExit(f"ivgf export: {error}") from None
    print(
        f"wrote {result.path} ({result.task}, part {result.part!r}, opset {result.opset}); inputs "
        f"{', '.join(result.input_names)}; outputs {', '.join(result.output_names)}"
    )
    batch_size = args.check_batch_size
    if result.part == "detections" and sizes:
        size = _size(args.example_size)
        print(f"detections: the graph takes one image of {size[0]}x{size[1]} (--example-size); checked at that size")
        sizes, batch_size = [size], 1
    if not sizes:
        return 0
    rows = onnx_parity(model, out, sizes, batch_size=batch_size, part=result.part)
    print("| input (B x H x W) | outputs | max abs diff vs PyTorch |")
    print("|---|---|---|")
    for row in rows:
        shapes = ", ".join(f"{name} {tuple(shape)}" for name, shape in row["outputs"].items())
        print(f"| {row['batch_size']} x {row['size'][0]} x {row['size'][1]} | {shapes} | {row['max_abs_diff']:.2e} |")
    worst = max(row["max_abs_diff"] for row in rows)
    if worst > args.tolerance:
        print(f"parity FAILED: max abs diff {worst:.2e} > tolerance {args.tolerance:g}")
        return 1
    print(f"parity ok: max abs diff {worst:.2e} <= {args.tolerance:g}")
    return 0


def register(commands) -> None:
    parser = commands.add_parser(
        "export",
        help="export a saved model to ONNX (dynamic batch / height / width) and check it in onnxruntime",
        description="Export a saved IVGF model folder to ONNX. Segmentation: the whole model (pixel_values, "
        "pixel_values_ir -> logits), dynamic batch, height and width. Detection: the whole detector for one image of "
        "the --example-size (-> boxes, scores, labels), or with --part features the trunk and feature pyramid "
        "(-> p2..p5, pool) with dynamic sizes. Then runs the graph in onnxruntime at --check-sizes and prints the "
        "largest difference to PyTorch (docs/deployment.md).",
    )
    parser.add_argument("--format", choices=_FORMATS, default="onnx", help="export format (default: onnx)")
    parser.add_argument("--model", required=True, help="saved model folder (save_pretrained, ivgf train / quickstart)")
    parser.add_argument("--out", required=True, help="file to write, e.g. model.onnx")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument(
        "--part",
        choices=("auto", "logits", "detections", "features"),
        default="auto",
        help="auto: segmentation logits, detection detections (default: auto)",
    )
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default: 18)")
    parser.add_argument(
        "--example-size",
        default="96x128",
        metavar="HxW",
        help="size of the traced example: multiples of 32; dynamic parts: at least 96, not square; "
        "detections: the fixed input size of the graph (default: 96x128)",
    )
    parser.add_argument(
        "--check-sizes",
        default="64x64,96x128",
        metavar="HxW,...",
        help="input sizes of the onnxruntime parity check; empty to skip (default: 64x64,96x128)",
    )
    parser.add_argument("--check-batch-size", type=int, default=1, help="batch of the parity check (default: 1)")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-3,
        help="largest accepted abs difference; exit status 1 above it (default: 1e-3)",
    )
    add_threads_argument(parser)
    parser.set_defaults(handler=_export)
