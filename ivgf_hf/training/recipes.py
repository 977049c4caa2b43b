"""Training recipes: every setting of a run in one flat dataclass, named presets, and override resolution.

A recipe is resolved in this order, later sources winning: a named preset (:data:`RECIPES`), a YAML / JSON file,
then ``key=value`` overrides (the CLI's explicit flags and ``--set``). Dict-valued fields take dotted keys
(``model_overrides.drop_path_rate=0.1``, ``cma_config.cutout_prob=0.3``). Values given as strings (command line,
or YAML scalars such as ``1e-4`` that YAML reads as text) are converted to the field's type; unknown keys and
values of the wrong type raise :class:`RecipeError` naming the key.
"""

import dataclasses
import difflib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

__all__ = [
    "TrainingRecipe",
    "RecipeError",
    "RECIPES",
    "TASK_OF_DATASET",
    "DATASETS",
    "get_recipe",
    "list_recipes",
    "load_recipe_file",
    "parse_assignments",
    "resolve_recipe",
    "CADENCE_FIELDS",
]

# Data sets ``ivgf train`` knows how to load; SynthRGBT serves either task (see ivgf_hf.training.data).
TASK_OF_DATASET = {"mfnet": "segmentation", "msrs": "segmentation", "m3fd": "detection", "synthrgbt": None}
DATASETS = tuple(TASK_OF_DATASET)
TASKS = ("segmentation", "detection")
MIXED_PRECISION = ("no", "fp16", "bf16")
ADAM_IMPLEMENTATIONS = ("foreach", "fused", "auto")  # see ivgf_hf.training.optim.adam_kernel_flags
CLASS_WEIGHTINGS = ("none", "enet")  # see ivgf_hf.training.class_weights
DEFAULT_BEST_METRIC = {"segmentation": "mIoU", "detection": "mAP"}
# Fields that may change when a run is resumed: they do not alter the training trajectory.
CADENCE_FIELDS = (
    "save_every",
    "keep_last",
    "eval_every",
    "log_every",
    "num_workers",
    "report_to",
    "export_check",
    "eval_max_samples",
    "eval_batch_size",
    "data_root",
)


class RecipeError(ValueError):
    """A recipe key or value is invalid (the message names it)."""


@dataclass
class TrainingRecipe:
    """Every setting of a training run. Steps are optimizer steps; ``batch_size`` is per process.

    The effective batch is ``batch_size x processes x gradient_accumulation_steps``; the paper's batch of 2 is one
    GPU with ``batch_size=2``.
    """

    name: str = "custom"
    task: str = "segmentation"
    # data
    dataset: str = "mfnet"
    data_root: Optional[str] = None
    train_split: str = "train"
    eval_split: Optional[str] = "test"
    split_files: dict = field(default_factory=dict)
    split_seed: int = 0
    crop_size: int = 512
    scale_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float = 0.75
    hflip_prob: float = 0.5
    photometric: bool = True
    cma: bool = True
    cma_config: dict = field(default_factory=dict)
    class_weighting: str = "none"
    eval_size: Optional[int] = None
    eval_max_samples: Optional[int] = None
    num_workers: int = 2
    # model and initialisation
    preset: str = "base"
    model_overrides: dict = field(default_factory=dict)
    init_from: Optional[str] = None
    infrared_checkpoint: Optional[str] = None
    visible_checkpoint: Optional[str] = None
    paired_init: bool = False
    # optimiser (AdamW)
    learning_rate: float = 1e-4
    weight_decay: float = 0.05
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_epsilon: float = 1e-8
    layer_decay: float = 0.75
    adam_implementation: str = "foreach"
    max_grad_norm: Optional[float] = None
    # schedule: linear warm-up times polynomial decay, per optimizer step
    max_steps: int = 240_000
    warmup_steps: int = 1500
    warmup_ratio: float = 1e-6
    poly_power: float = 1.0
    min_lr: float = 0.0
    # batch and hardware
    batch_size: int = 2
    eval_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    sync_batchnorm: bool = True
    seed: int = 0
    # checkpoints, evaluation, logging
    save_every: int = 8000
    keep_last: int = 3
    eval_every: int = 8000
    log_every: int = 50
    best_metric: Optional[str] = None
    report_to: tuple[str, ...] = ()
    export_check: bool = True

    def __post_init__(self):
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            setattr(self, item.name, _coerce(item.name, value, _FIELD_TYPES[item.name]))
        self.validate()

    @property
    def metric_for_best(self) -> str:
        """Validation metric that selects the best model (``best_metric`` or the task's headline metric)."""
        return self.best_metric or DEFAULT_BEST_METRIC[self.task]

    def validate(self) -> None:
        """Raise :class:`RecipeError` for inconsistent values."""
        _check_choice("task", self.task, TASKS)
        _check_choice("dataset", self.dataset, DATASETS)
        _check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        _check_choice("adam_implementation", self.adam_implementation, ADAM_IMPLEMENTATIONS)
        _check_choice("class_weighting", self.class_weighting, CLASS_WEIGHTINGS)
        if self.class_weighting != "none" and self.task != "segmentation":
            raise RecipeError(f"class_weighting {self.class_weighting!r} applies to segmentation only")
        expected = TASK_OF_DATASET[self.dataset]
        if expected is not None and expected != self.task:
            raise RecipeError(f"dataset {self.dataset!r} is for {expected}, but task is {self.task!r}")
        for name in (
            "max_steps",
            "batch_size",
            "eval_batch_size",
            "gradient_accumulation_steps",
            "save_every",
            "eval_every",
            "log_every",
            "keep_last",
        ):
            if getattr(self, name) < 1:
                raise RecipeError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "num_workers", "seed", "split_seed"):
            if getattr(self, name) < 0:
                raise RecipeError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.crop_size < 32 or self.crop_size % 32:
            raise RecipeError(f"crop_size must be a positive multiple of 32 (the padding unit), got {self.crop_size}")
        if self.eval_size is not None and self.eval_size < 32:
            raise RecipeError(f"eval_size must be >= 32 pixels or None, got {self.eval_size}")
        if self.eval_max_samples is not None and self.eval_max_samples < 1:
            raise RecipeError(f"eval_max_samples must be >= 1 or None, got {self.eval_max_samples}")
        if not 0.0 < self.layer_decay <= 1.0:
            raise RecipeError(f"layer_decay must be in (0, 1], got {self.layer_decay}")
        if self.learning_rate <= 0 or not 0 <= self.min_lr < self.learning_rate:
            raise RecipeError(
                f"need learning_rate > 0 and 0 <= min_lr < learning_rate, got {self.learning_rate}, {self.min_lr}"
            )
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise RecipeError(f"warmup_ratio must be in [0, 1], got {self.warmup_ratio}")
        if self.weight_decay < 0 or self.poly_power <= 0:
            raise RecipeError("weight_decay must be >= 0 and poly_power > 0")
        if len(self.scale_range) != 2 or not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise RecipeError(f"scale_range must be (min, max) with 0 < min <= max, got {self.scale_range}")
        if len(self.adam_betas) != 2 or not all(0.0 <= b < 1.0 for b in self.adam_betas):
            raise RecipeError(f"adam_betas must be two values in [0, 1), got {self.adam_betas}")
        if self.init_from and (self.infrared_checkpoint or self.visible_checkpoint):
            raise RecipeError("init_from (a saved IVGF model) excludes infrared_checkpoint / visible_checkpoint")
        unknown = [
            name
            for name in self.report_to
            if name not in ("tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive", "trackio")
        ]
        if unknown:
            raise RecipeError(f"report_to: unknown tracker(s) {unknown}")

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists); ``TrainingRecipe(**d)`` restores it."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def replace(self, **changes) -> "TrainingRecipe":
        """A copy with ``changes`` applied (validated); see :func:`apply_overrides` for dotted keys."""
        return apply_overrides(self, changes)

    def save(self, path: Union[str, Path]) -> Path:
        """Write the recipe as JSON (loadable with :func:`load_recipe_file`)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path


_FIELD_TYPES = typing.get_type_hints(TrainingRecipe)


def _check_choice(name, value, choices):
    if value not in choices:
        raise RecipeError(f"{name} must be one of {list(choices)}, got {value!r}")


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _parse_text(text: str) -> Any:
    """A command-line / YAML string as a Python value: JSON first, then YAML, else the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        import yaml

        return yaml.safe_load(text)
    except Exception:  # noqa: BLE001 - any YAML failure means: keep the text
        return text


def _coerce(name: str, value: Any, annotation) -> Any:
    """``value`` converted to the field type ``annotation`` (``Optional[X]``, int, float, bool, str, tuple, dict)."""
    optional = typing.get_origin(annotation) is Union and type(None) in typing.get_args(annotation)
    base = next(a for a in typing.get_args(annotation) if a is not type(None)) if optional else annotation
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
        if optional:
            return None
        raise RecipeError(f"{name} may not be None")
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
                return value.strip().lower() in _TRUE
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise ValueError
        if base is int:
            if isinstance(value, bool):
                raise ValueError
            number = float(value) if isinstance(value, str) else value
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            return int(number)
        if base is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if base is str:
            if not isinstance(value, str):
                raise ValueError
            return value
        if typing.get_origin(base) is tuple:
            element = typing.get_args(base)[0]
            if isinstance(value, str):
                parsed = _parse_text(value)
                if not isinstance(parsed, (list, tuple)):
                    parsed = [v.strip() for v in value.split(",") if v.strip()]
                value = parsed
            if not isinstance(value, (list, tuple)):
                raise ValueError
            return tuple(_coerce(name, v, element) for v in value)
        if base is dict:
            if isinstance(value, str):
                value = _parse_text(value)
            if not isinstance(value, Mapping):
                raise ValueError
            return dict(value)
    except (TypeError, ValueError):
        raise RecipeError(f"{name}: cannot use {value!r} as {getattr(base, '__name__', base)}") from None
    raise RecipeError(f"{name}: unsupported field type {annotation}")


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, _FIELD_TYPES, n=3)
    return f"; did you mean {', '.join(close)}?" if close else f"; valid keys: {', '.join(sorted(_FIELD_TYPES))}"


def apply_overrides(recipe: TrainingRecipe, overrides: Mapping[str, Any]) -> TrainingRecipe:
    """A new recipe with ``overrides`` applied; keys are field names or ``<dict field>.<key>``."""
    values = dataclasses.asdict(recipe)
    for key, value in overrides.items():
        head, _, sub = str(key).partition(".")
        if head not in _FIELD_TYPES:
            raise RecipeError(f"unknown recipe key {key!r}{_suggest(head)}")
        if sub:
            if _FIELD_TYPES[head] is not dict:
                raise RecipeError(f"{key!r}: only dict fields take dotted keys ({head} is not a dict)")
            values[head] = {**values[head], sub: _parse_text(value) if isinstance(value, str) else value}
        else:
            values[head] = value
    return TrainingRecipe(**values)


def parse_assignments(assignments: Sequence[str]) -> dict:
    """``["lr=1e-4", "model_overrides.drop_path_rate=0.1"]`` -> ordered ``{key: text}`` (values stay strings)."""
    parsed = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"--set expects KEY=VALUE, got {item!r}")
        parsed[key.strip()] = value.strip()
    return parsed


def load_recipe_file(path: Union[str, Path]) -> dict:
    """Recipe fields from a ``.json``, ``.yaml`` or ``.yml`` file (a mapping of keys to values)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe file {path} does not exist")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as error:
            raise RecipeError(f"{path}: invalid JSON ({error})") from None
    elif path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise RecipeError(f"{path}: invalid YAML ({error})") from None
    else:
        raise RecipeError(f"{path}: recipe files must end in .json, .yaml or .yml")
    if not isinstance(data, Mapping):
        raise RecipeError(f"{path}: expected a mapping of recipe keys to values, got {type(data).__name__}")
    return dict(data)


# The paper's settings (section IV-A) and the project's CPU recipes. "Inferred": the layer-wise decay of 0.75 is
# ConvMAE's segmentation recipe (the paper says it follows InfMAE); warm-up ratio 1e-6 and min_lr 0 are mmseg's.
_PAPER = dict(
    preset="base",
    learning_rate=1e-4,
    adam_betas=(0.9, 0.999),
    layer_decay=0.75,
    warmup_steps=1500,
    warmup_ratio=1e-6,
    poly_power=1.0,
    min_lr=0.0,
    batch_size=2,
    cma=True,
    photometric=True,
    save_every=8000,
    eval_every=8000,
    keep_last=3,
)
_SYNTH_CPU = dict(
    dataset="synthrgbt",
    preset="tiny",
    paired_init=True,
    layer_decay=1.0,
    warmup_steps=50,
    warmup_ratio=1e-3,
    scale_range=(0.5, 1.5),
    num_workers=1,
    keep_last=2,
    log_every=20,
    eval_batch_size=2,
)
RECIPES = {
    "mfnet-seg": dict(
        _PAPER,
        task="segmentation",
        dataset="mfnet",
        weight_decay=0.05,
        max_steps=240_000,
        crop_size=512,
        eval_split="val",
    ),
    "msrs-seg": dict(
        _PAPER,
        task="segmentation",
        dataset="msrs",
        weight_decay=0.05,
        max_steps=240_000,
        crop_size=512,
        eval_split="test",
    ),
    "m3fd-det": dict(
        _PAPER,
        task="detection",
        dataset="m3fd",
        weight_decay=0.1,
        max_steps=160_000,
        crop_size=896,
        eval_split="test",
    ),
    # Measured (docs/quickstart.md): in 800 steps from scratch, ENet class weights let the small classes be learned
    # and cutout&mix only slows learning down, so this CPU recipe weighs classes and leaves CMA off.
    "synth-seg-cpu": dict(
        _SYNTH_CPU,
        task="segmentation",
        learning_rate=2e-3,
        weight_decay=0.05,
        max_steps=800,
        crop_size=128,
        save_every=400,
        eval_every=400,
        class_weighting="enet",
        cma=False,
    ),
    # Measured (docs/detection.md, "Why the CPU detector did not learn, and the fix"): the detection crop fits the
    # whole image at scale_range x the fit scale, so the evaluation resizes the longer side to the crop size
    # (eval_size = crop_size) and both see the objects at the same scale; SynthRGBT's objects are then 6-50 px
    # (sqrt of the area). The anchors follow those sizes: 8-128 px on P2-P6 (2x the stride) with a half-octave
    # second size and the tall 4:1 ratio of lamps and people.
    "synth-det-cpu": dict(
        _SYNTH_CPU,
        task="detection",
        learning_rate=5e-4,
        weight_decay=0.1,
        max_steps=700,
        crop_size=160,
        scale_range=(0.8, 1.25),
        eval_size=160,
        save_every=350,
        eval_every=350,
        max_grad_norm=10.0,
        model_overrides=dict(
            fpn_channels=64,
            anchor_sizes=[8, 16, 32, 64, 128],
            anchor_scales=[1.0, 1.4142],
            anchor_aspect_ratios=[0.5, 1.0, 2.0, 4.0],
            rpn_pre_nms_top_n_train=600,
            rpn_post_nms_top_n_train=300,
            rpn_pre_nms_top_n_test=300,
            rpn_post_nms_top_n_test=150,
            box_batch_size_per_image=128,
        ),
    ),
}


def list_recipes() -> list:
    """Names accepted by :func:`get_recipe`."""
    return sorted(RECIPES)


def get_recipe(name: str, **overrides) -> TrainingRecipe:
    """The named recipe with ``overrides`` (field names or dotted dict keys) applied."""
    if name not in RECIPES:
        raise RecipeError(f"unknown recipe {name!r}; available: {', '.join(list_recipes())}")
    return apply_overrides(TrainingRecipe(name=name, **RECIPES[name]), overrides)


def resolve_recipe(
    name: Optional[str] = None,
    config_file: Union[str, Path, None] = None,
    overrides: Optional[Mapping[str, Any]] = None,
    base: Optional[TrainingRecipe] = None,
) -> TrainingRecipe:
    """Preset ``name`` (or ``base``, or the defaults) <- ``config_file`` <- ``overrides``, validated."""
    if name is not None and base is not None:
        raise RecipeError("give a recipe name or a base recipe, not both")
    recipe = get_recipe(name) if name is not None else (base or TrainingRecipe())
    if config_file is not None:
        recipe = apply_overrides(recipe, load_recipe_file(config_file))
    return apply_overrides(recipe, overrides or {})
