"""``ivgf train``: train IVGF with a named recipe, on one process or under ``accelerate launch`` / ``torchrun``."""

import json
import os
from pathlib import Path

from ..threads import add_threads_argument

__all__ = ["register"]

# Flags that set the recipe key of the same name. They are applied after --config and before --set.
_FLAG_KEYS = (
    "dataset",
    "data_root",
    "init_from",
    "infrared_checkpoint",
    "visible_checkpoint",
    "max_steps",
    "batch_size",
    "learning_rate",
    "gradient_accumulation_steps",
    "mixed_precision",
    "gradient_checkpointing",
    "seed",
    "num_workers",
    "save_every",
    "eval_every",
    "log_every",
    "keep_last",
    "report_to",
    "export_check",
)


def _recipe_table() -> str:
    from ..training.recipes import RECIPES, get_recipe

    header = "| recipe | task | data set | preset | lr | wd | layer decay | steps | warm-up | batch | crop |"
    rows = [header, "|" + "---|" * 11]
    for name in sorted(RECIPES):
        r = get_recipe(name)
        rows.append(
            f"| {name} | {r.task} | {r.dataset} | {r.preset} | {r.learning_rate:g} | {r.weight_decay:g} | "
            f"{r.layer_decay:g} | {r.max_steps} | {r.warmup_steps} | {r.batch_size} | {r.crop_size} |"
        )
    return "\n".join(rows)


def _resolve(args):
    from ..training.recipes import RecipeError, TrainingRecipe, parse_assignments, resolve_recipe

    base = None
    saved = Path(args.output_dir) / "recipe.json" if args.output_dir else None
    if args.resume and args.recipe is None and saved is not None and saved.is_file():
        base = TrainingRecipe(**json.loads(saved.read_text()))
    if base is None and args.recipe is None:
        raise RecipeError("--recipe is required (or --resume in a folder that holds a run); see --list-recipes")
    overrides = {key: getattr(args, key) for key in _FLAG_KEYS if getattr(args, key) is not None}
    overrides.update(parse_assignments(args.set))
    return resolve_recipe(args.recipe if base is None else None, args.config, overrides, base=base)


def _train(args) -> int:
    import logging

    from ..data import RGBTSampleError
    from ..training.recipes import RecipeError

    if args.list_recipes:
        print(_recipe_table())
        return 0
    try:
        recipe = _resolve(args)
        if args.print_recipe:
            print(json.dumps(recipe.to_dict(), indent=2, sort_keys=True))
            return 0
        if not args.output_dir:
            raise RecipeError("--output-dir is required")
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
        logging.getLogger("ivgf_hf").setLevel(logging.INFO)
        from ..training.loop import train

        result = train(recipe, args.output_dir, resume=args.resume, overwrite=args.overwrite)
    except (RecipeError, RGBTSampleError, OSError) as error:
        raise SystemExit(f"ivgf train: {error}") from None
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"trained {result.global_step} steps; final model: {result.final_model}")
        if result.best_model is not None:
            best = f"{recipe.metric_for_best} {result.best_metric:.4f} at step {result.best_step}"
            print(f"best {best}: {result.best_model}")
    return 0


def register(commands) -> None:
    parser = commands.add_parser(
        "train",
        help="train IVGF (segmentation or detection) with a named recipe",
        description="Train IVGF with a recipe: a named preset, then --config FILE, then the explicit flags, then "
        "--set KEY=VALUE (later wins). Runs on CPU or one GPU as is, and on several GPUs or nodes under "
        "`accelerate launch --multi_gpu` or `torchrun`. The resolved recipe is saved as OUTPUT_DIR/recipe.json.",
    )
    parser.add_argument("--recipe", help="named recipe (see --list-recipes)")
    parser.add_argument("--config", help="YAML or JSON file of recipe keys (e.g. a saved recipe.json)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any recipe key; dict keys as model_overrides.NAME=VALUE (repeatable)",
    )
    parser.add_argument("--dataset", choices=["mfnet", "msrs", "m3fd", "synthrgbt"])
    parser.add_argument("--data-root", help="data set folder (SynthRGBT: a folder written by generate_synthrgbt)")
    parser.add_argument("--output-dir", help="run folder (checkpoints, logs, final_model/, best_model/)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output-dir (newest checkpoint)")
    parser.add_argument("--overwrite", action="store_true", help="delete the run in --output-dir and start over")
    init = parser.add_argument_group("initialisation (default: from scratch)")
    init.add_argument("--init-from", help="saved IVGF folder or Hub id to fine-tune")
    init.add_argument("--infrared-checkpoint", help="original InfMAE checkpoint for the infrared encoder")
    init.add_argument("--visible-checkpoint", help="original MCMAE / ConvMAE checkpoint for the visible encoder")
    flags = parser.add_argument_group("common recipe keys")
    flags.add_argument("--max-steps", type=int)
    flags.add_argument("--batch-size", type=int, help="images per process and micro-batch")
    flags.add_argument("--learning-rate", "--lr", type=float)
    flags.add_argument("--gradient-accumulation-steps", type=int)
    flags.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"])
    flags.add_argument("--gradient-checkpointing", action="store_const", const=True)
    flags.add_argument("--seed", type=int)
    flags.add_argument("--num-workers", type=int, help="DataLoader worker processes per training process")
    flags.add_argument("--save-every", type=int, help="checkpoint interval (optimizer steps)")
    flags.add_argument("--eval-every", type=int, help="evaluation interval (optimizer steps)")
    flags.add_argument("--log-every", type=int, help="logging interval (optimizer steps)")
    flags.add_argument("--keep-last", type=int, help="checkpoints kept (plus the best one)")
    flags.add_argument("--report-to", nargs="+", help="trackers, e.g. tensorboard")
    flags.add_argument(
        "--no-export-check",
        dest="export_check",
        action="store_const",
        const=False,
        help="skip reloading final_model/ as remote code in a fresh process",
    )
    parser.add_argument("--list-recipes", action="store_true", help="print the named recipes and exit")
    parser.add_argument("--print-recipe", action="store_true", help="print the resolved recipe as JSON and exit")
    add_threads_argument(parser)
    parser.set_defaults(handler=_train)
