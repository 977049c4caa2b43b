"""``ivgf convert``: original InfMAE / MCMAE checkpoint -> IVGF encoder weights (safetensors)."""

from pathlib import Path

__all__ = ["register"]


def _convert(args) -> int:
    from safetensors.torch import save_file

    from ..conversion import convert_mae_checkpoint, load_checkpoint_file
    from ..presets import get_config

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise SystemExit(f"ivgf convert: {out} exists; pass --overwrite to replace it")
    overrides = {}
    if args.num_channels:
        overrides["num_channels_ir" if args.modality == "infrared" else "num_channels"] = args.num_channels
    config = get_config(args.preset, **overrides)
    checkpoint = load_checkpoint_file(args.checkpoint)
    result = convert_mae_checkpoint(checkpoint, config, args.modality, check_origin=not args.ignore_origin)
    out.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "pt", "modality": args.modality, "preset": args.preset, "origin": result.origin}
    save_file(result.state_dict, str(out), metadata=metadata)
    print(result.report())
    print(f"wrote {len(result.state_dict)} tensors to {out}")
    return 0


def register(commands) -> None:
    parser = commands.add_parser(
        "convert",
        help="convert an InfMAE / MCMAE checkpoint to IVGF encoder weights (safetensors)",
        description="Convert an original InfMAE (infrared) or MCMAE/ConvMAE (visible) checkpoint. Prints every "
        "dropped checkpoint key, every encoder key the checkpoint could not fill and what the checkpoint says about "
        "its origin; refuses NaN / infinite weights and a checkpoint that names the other modality.",
    )
    parser.add_argument("checkpoint", help="original .pth (MAE pretraining or ConvMAE segmentation backbone)")
    parser.add_argument("--modality", choices=["visible", "infrared"], required=True)
    parser.add_argument("--preset", default="base", help="configuration whose encoder receives the weights")
    parser.add_argument("--num-channels", type=int, help="input channels (default: 3 visible, 1 infrared)")
    parser.add_argument("--out", required=True, help="output .safetensors file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument(
        "--ignore-origin",
        action="store_true",
        help="convert a checkpoint that says it is of the other modality (the encoders are identical)",
    )
    parser.set_defaults(handler=_convert)
