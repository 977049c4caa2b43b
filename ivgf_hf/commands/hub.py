"""``ivgf push`` (check an exported folder, upload it) and ``ivgf init-checkpoint`` (foundation weights -> folder)."""

import json
from pathlib import Path

__all__ = ["register"]

TASK_CHOICES = ("segmentation", "detection")


def _plots_for_card(plots, folder: Path) -> tuple:
    """(paths the card links to, {path_in_repo: local file} to upload besides the folder)."""
    links, extra = [], {}
    for plot in plots or []:
        plot = Path(plot)
        if not plot.is_file():
            raise FileNotFoundError(f"plot not found: {plot}")
        try:
            links.append(plot.resolve().relative_to(folder.resolve()).as_posix())
            continue
        except ValueError:
            pass
        link = f"plots/{plot.name}"
        if link in extra:
            raise ValueError(f"two plots are named {plot.name} ({extra[link]} and {plot}); rename one")
        extra[link] = plot
        links.append(link)
    return links, extra


def _card_for_push(args, export) -> tuple:
    """(card text or None, extra files, what the README.md of the push is) for ``ivgf push``."""
    from ..cards import render_model_card

    card_options = (args.metrics, args.recipe, args.split, args.plot, args.dataset, args.base_model, args.summary)
    if not any(card_options):
        if "README.md" in export.files:
            return None, {}, "the folder's README.md"
        if export.task is None:
            return None, {}, "none (no card template for a base model)"
    elif export.task is None:
        raise ValueError(
            f"model cards exist for segmentation and detection models; {export.path} holds {export.model_class}"
        )
    links, extra = _plots_for_card(args.plot, export.path)
    card = render_model_card(
        export.task,
        args.repo_id,
        args.revision or "main",
        metrics=args.metrics,
        recipe=args.recipe,
        split=args.split,
        plots=links,
        class_names=[export.id2label[i] for i in sorted(export.id2label)],
        datasets=args.dataset,
        base_model=args.base_model,
        summary=args.summary,
    )
    return card, extra, "rendered from model_cards/" + export.task + ".md (the folder is not changed)"


def _push(args) -> int:
    from ..hub import ExportCheckError, HubFolderError, HubPushError, inspect_export_folder, push_folder

    folder = Path(args.folder)
    try:
        export = inspect_export_folder(folder)
        card, extra_files, card_source = _card_for_push(args, export)
        result = push_folder(
            folder,
            args.repo_id,
            revision=args.revision,
            create_pr=args.create_pr,
            private=True if args.private else None,
            token=args.token,
            commit_message=args.commit_message,
            card=card,
            extra_files=extra_files,
            dry_run=args.dry_run,
        )
    except (HubFolderError, ExportCheckError, HubPushError, FileNotFoundError, ValueError) as error:
        raise SystemExit(f"ivgf push: {error}") from error
    target = f"{result.repo_id} ({'pull request on ' if result.create_pr else ''}{result.revision or 'main'})"
    if result.dry_run:
        print(
            f"ivgf push --dry-run: the folder passed its checks; nothing was uploaded. A push would send "
            f"{len(result.files)} files to {target}:"
        )
    else:
        print(f"pushed {len(result.files)} files to {target}:")
    for name in result.files:
        print(f"  {name}")
    print(f"README.md: {card_source}")
    if result.deleted:
        print("deleted from the repo (code and weights of an earlier export): " + ", ".join(result.deleted))
    if result.pr_url or result.commit_url:
        print(f"{'pull request' if result.pr_url else 'commit'}: {result.pr_url or result.commit_url}")
    return 0


def _parse_id2label(value: str) -> dict:
    """``{id: name}`` from JSON text or a JSON file: ``{"0": "car", ...}`` or ``["car", ...]``."""
    source = Path(value) if not value.lstrip().startswith(("{", "[")) else None
    try:
        data = json.loads(source.read_text(encoding="utf-8") if source else value)
    except FileNotFoundError:
        raise SystemExit(f"ivgf init-checkpoint: --id2label file not found: {source}") from None
    except json.JSONDecodeError as error:
        raise SystemExit(f"ivgf init-checkpoint: --id2label is not valid JSON ({error})") from error
    if isinstance(data, list):
        data = dict(enumerate(data))
    if not isinstance(data, dict) or not data:
        raise SystemExit('ivgf init-checkpoint: --id2label must be a JSON object {"0": name, ...} or a list of names')
    try:
        labels = {int(key): str(name) for key, name in data.items()}
    except ValueError as error:
        raise SystemExit(f"ivgf init-checkpoint: --id2label keys must be integers ({error})") from error
    if sorted(labels) != list(range(len(labels))):
        raise SystemExit(f"ivgf init-checkpoint: --id2label ids must be 0..{len(labels) - 1}, got {sorted(labels)}")
    return labels


def _parse_overrides(items) -> dict:
    """``{key: value}`` from ``KEY=VALUE`` strings; values are JSON when they parse, text otherwise."""
    import inspect

    from ..modeling.configuration_ivgf import IVGFConfig

    known = set(inspect.signature(IVGFConfig.__init__).parameters) - {"self", "kwargs"}
    overrides = {}
    for item in items or []:
        key, separator, text = item.partition("=")
        if not separator or key not in known:
            raise SystemExit(
                f"ivgf init-checkpoint: --set {item!r}: expected KEY=VALUE with KEY an IVGFConfig argument "
                f"({', '.join(sorted(known))})"
            )
        try:
            overrides[key] = json.loads(text)
        except json.JSONDecodeError:
            overrides[key] = text
    return overrides


def _task_model_class(task: str):
    if task == "detection":
        from ..modeling.detection_ivgf import IVGFForObjectDetection

        return IVGFForObjectDetection
    from ..modeling.modeling_ivgf import IVGFForSemanticSegmentation

    return IVGFForSemanticSegmentation


def _init_checkpoint(args) -> int:
    from ..conversion import CheckpointFormatError, load_foundation_weights
    from ..hub import ExportCheckError, export_for_hub
    from ..modeling.image_processing_ivgf import IVGFImageProcessor
    from ..presets import get_config

    checkpoints = {"infrared": args.infrared_checkpoint, "visible": args.visible_checkpoint}
    if not any(checkpoints.values()):
        raise SystemExit("ivgf init-checkpoint: give --infrared-checkpoint and/or --visible-checkpoint")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
        raise SystemExit(f"ivgf init-checkpoint: {out} exists and is not an empty folder; pass --overwrite to replace")
    labels = _parse_id2label(args.id2label) if args.id2label else None
    if labels is None and args.num_labels is None:
        raise SystemExit("ivgf init-checkpoint: give --num-labels or --id2label")
    if labels is not None and args.num_labels is not None and args.num_labels != len(labels):
        raise SystemExit(f"ivgf init-checkpoint: --num-labels {args.num_labels} but --id2label has {len(labels)} names")
    label_settings = (
        {"id2label": labels, "label2id": {name: i for i, name in labels.items()}}
        if labels
        else {"num_labels": args.num_labels}
    )
    try:
        config = get_config(args.preset, **label_settings, **_parse_overrides(args.set))
        model = _task_model_class(args.task)(config)
        results = load_foundation_weights(model, **{f"{m}_checkpoint": path for m, path in checkpoints.items()})
    except (KeyError, ValueError, TypeError, FileNotFoundError, CheckpointFormatError) as error:
        raise SystemExit(f"ivgf init-checkpoint: {error}") from error
    for modality, result in results.items():
        print(f"== {modality} encoder <- {checkpoints[modality]}")
        print(result.report())
    base = getattr(model, "ivgf", model)
    for modality, path in checkpoints.items():
        if path is None and getattr(base, f"{modality}_encoder", None) is not None:
            print(f"== {modality} encoder: no checkpoint given, it keeps its random initialisation")
    processor = IVGFImageProcessor(ir_num_channels=config.num_channels_ir)
    try:
        export_for_hub(model, processor, out, overwrite=args.overwrite, check=not args.no_check)
    except ExportCheckError as error:
        raise SystemExit(f"ivgf init-checkpoint: the export failed its remote-code check: {error}") from error
    print(
        f"wrote {out}: {type(model).__name__} (preset {args.preset}, {config.num_labels} labels); the fusion modules "
        "and the head keep their initialisation, fine-tune before use"
    )
    return 0


def _register_push(commands) -> None:
    parser = commands.add_parser(
        "push",
        help="check an exported model folder and upload it to the Hugging Face Hub",
        description="Check FOLDER (safetensors only; code identical to the installed ivgf_hf; reloads with "
        "trust_remote_code in a fresh process without ivgf_hf and reproduces the installed library's outputs), "
        "then upload it to the model repo REPO_ID in one commit. The folder itself is never changed.",
    )
    parser.add_argument("folder", help="a folder written by export_for_hub or ivgf init-checkpoint")
    parser.add_argument("repo_id", help="namespace/name of the Hub model repo (created if absent)")
    parser.add_argument("--revision", help="branch (created from main if absent) or refs/pr/N to commit to")
    parser.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    parser.add_argument(
        "--private", action="store_true", help="create the repo as private (an existing repo keeps its visibility)"
    )
    parser.add_argument("--token", help="Hugging Face token (default: HF_TOKEN or the token of `hf auth login`)")
    parser.add_argument("--commit-message", help="default: 'Upload <model class> with ivgf-hf <version>'")
    parser.add_argument("--dry-run", action="store_true", help="run every check and list the files; upload nothing")
    card = parser.add_argument_group(
        "model card",
        "Any of these renders README.md from model_cards/ for the upload (the folder's own README.md "
        "is then not sent); without them the folder's README.md is sent, or a card without results is rendered.",
    )
    card.add_argument("--metrics", help="evaluation JSON (ivgf eval output, or a bare metrics dict)")
    card.add_argument("--recipe", help="training settings, a JSON or YAML file")
    card.add_argument("--split", help="the evaluation split, e.g. 'MFNet test (393 images)'")
    card.add_argument(
        "--plot",
        action="append",
        help="image to show under the metrics (repeatable); uploaded to plots/ unless it is inside the folder",
    )
    card.add_argument("--dataset", action="append", help="Hub dataset id for the card metadata (repeatable)")
    card.add_argument("--base-model", help="Hub model id the checkpoint was fine-tuned from")
    card.add_argument("--summary", help="a paragraph under the card's title")
    parser.set_defaults(handler=_push)


def _register_init_checkpoint(commands) -> None:
    parser = commands.add_parser(
        "init-checkpoint",
        help="build an IVGF model on converted InfMAE / MCMAE weights and save it as a Hub-ready folder",
        description="Build an IVGF task model, load the converted foundation weights into its encoders (fusion "
        "modules and head keep their initialisation), print each converter's key report and save the model and "
        "its image processor with export_for_hub (safetensors, remote code, checked by a fresh-process reload).",
    )
    parser.add_argument("--infrared-checkpoint", help="InfMAE checkpoint (.pth/.pt/.bin or .safetensors)")
    parser.add_argument("--visible-checkpoint", help="MCMAE / ConvMAE checkpoint (.pth/.pt/.bin or .safetensors)")
    parser.add_argument("--preset", default="base", help="configuration preset (default: base)")
    parser.add_argument("--task", choices=TASK_CHOICES, required=True)
    parser.add_argument("--num-labels", type=int, help="number of classes (or give --id2label)")
    parser.add_argument("--id2label", help='class names: JSON {"0": "car", ...} or ["car", ...], or a JSON file')
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a configuration field (repeatable; VALUE is JSON, e.g. drop_path_rate=0.1)",
    )
    parser.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--no-check", action="store_true", help="skip the fresh-process remote-code reload")
    parser.set_defaults(handler=_init_checkpoint)


def register(commands) -> None:
    _register_push(commands)
    _register_init_checkpoint(commands)
