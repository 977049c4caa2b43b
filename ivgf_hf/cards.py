"""Model cards for IVGF checkpoints: the templates of ``model_cards/`` filled with results, recipe and usage.

``render_model_card`` returns the text of a ``README.md``: YAML front matter for the Hub (``library_name``,
``pipeline_tag``, ``tags``, ``license``, ``datasets``, ``base_model``, ``metrics``) and a body with a usage snippet
pinned to a revision, the metrics table of an ``ivgf eval`` JSON, plots, the training recipe, the split used,
intended use and limits, and the licence terms of the foundation weights. The result parses with
``huggingface_hub.ModelCard``.
"""

import json
import math
import string
from pathlib import Path, PurePosixPath
from typing import Mapping, Optional, Sequence, Union

import yaml

from .evaluation.report import metrics_to_markdown

__all__ = ["TASKS", "TEMPLATE_DIR", "load_eval_json", "split_eval_results", "render_model_card"]

TASKS = ("segmentation", "detection")


def _find_template_dir() -> Path:
    """``model_cards/`` at the repository root (source tree, editable install) or inside an installed package."""
    package = Path(__file__).resolve().parent
    candidates = (package.parent / "model_cards", package / "model_cards")
    return next((path for path in candidates if (path / "segmentation.md").is_file()), candidates[0])


TEMPLATE_DIR = _find_template_dir()
_LICENCE_FILE = "foundation_licence.md"
_TASK_TITLES = {"segmentation": "semantic segmentation", "detection": "object detection"}
# A result of each task has these keys (see ivgf_hf.evaluation: SegmentationMetric / DetectionMetric.compute()).
_HEADLINE_KEY = {"segmentation": "mIoU", "detection": "mAP"}
# ivgf eval's protocols (the paper's Table VI): which modality was withheld at test time.
_MISSING = {"none": "none", "visible_missing": "visible", "infrared_missing": "infrared"}
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp")

PathLike = Union[str, Path]


def load_eval_json(path: PathLike) -> dict:
    """Read an evaluation JSON file (``ivgf eval`` output or a bare metrics dict), naming the file on errors."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"metrics file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read the metrics file {path}: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _result_task(result) -> Optional[str]:
    if not isinstance(result, Mapping):
        return None
    for task, key in _HEADLINE_KEY.items():
        if key in result:
            return task
    return None


def split_eval_results(data: Mapping) -> tuple:
    """Split evaluation output into ``(task, metrics, details)``.

    ``data`` is either the metrics themselves -- one result of ``SegmentationMetric.compute()`` /
    ``DetectionMetric.compute()``, or a mapping of group name to such results (``{"all": ..., "night": ...}``) --
    or a dict with a ``"metrics"`` key holding them (``ivgf eval`` output: ``{"task": ..., "metrics": ..., ...}``),
    whose other keys are returned as ``details``.

    Raises:
        ValueError: no recognisable result (the message lists the keys found), mixed kinds of results, or a
            ``"task"`` entry that disagrees with the metrics.
    """
    details = {}
    metrics = data
    if isinstance(data.get("metrics"), Mapping):
        metrics = data["metrics"]
        details = {key: value for key, value in data.items() if key != "metrics"}
    task = _result_task(metrics)
    if task is None:
        tasks = {_result_task(result) for result in metrics.values()} if metrics else {None}
        if None in tasks or len(tasks) != 1:
            raise ValueError(
                "metrics must be one result with 'mIoU' (segmentation) or 'mAP' (detection), or a mapping of group "
                f"name to such results of one kind; got keys {sorted(metrics)}"
            )
        task = tasks.pop()
    declared = str(details.get("task", "")).lower()
    other = "detection" if task == "segmentation" else "segmentation"
    if other[:6] in declared:  # "segment..." / "detect..."
        raise ValueError(f"the evaluation file says task {details['task']!r} but holds {task} metrics")
    return task, metrics, details


def _check_text(value: str, name: str) -> str:
    if not isinstance(value, str) or not value or any(c in value for c in '"\\\n\r'):
        raise ValueError(f"{name} must be a non-empty string without quotes, backslashes or newlines, got {value!r}")
    return value


def _format_value(value) -> str:
    if isinstance(value, float):
        text = "n/a" if math.isnan(value) else f"{value:g}"
    elif isinstance(value, (list, tuple)):
        text = ", ".join(_format_value(item) for item in value)
    elif value is None:
        text = "none"
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _flatten(mapping: Mapping, prefix: str = "") -> list:
    rows = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            rows += _flatten(value, f"{name}.")
        else:
            rows.append((name, _format_value(value)))
    return rows


def _load_recipe(recipe) -> Mapping:
    if isinstance(recipe, Mapping):
        return recipe
    path = Path(recipe)
    if not path.is_file():
        raise FileNotFoundError(f"recipe file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"cannot parse the recipe file {path}: {error}") from error
    if not isinstance(data, Mapping):
        raise ValueError(f"the recipe file {path} must hold a mapping of settings, got {type(data).__name__}")
    return data


def _training_section(recipe) -> str:
    if recipe is None:
        return "The training recipe was not recorded for this checkpoint."
    rows = _flatten(_load_recipe(recipe))
    if not rows:
        return "The training recipe was not recorded for this checkpoint."
    lines = ["| Setting | Value |", "|---|---|"] + [f"| `{name}` | {value} |" for name, value in rows]
    return "\n".join(lines)


def _plot_entries(plots) -> list:
    items = plots.items() if isinstance(plots, Mapping) else [(None, path) for path in plots]
    entries = []
    for caption, path in items:
        posix = PurePosixPath(str(path).replace("\\", "/"))
        if posix.is_absolute() or ".." in posix.parts or posix.suffix.lower() not in _IMAGE_SUFFIXES:
            raise ValueError(
                f"plot {path!r}: give an image path ({', '.join(_IMAGE_SUFFIXES)}) relative to the repository root"
            )
        caption = caption or posix.stem.replace("_", " ").replace("-", " ")
        entries.append(f"![{_format_value(caption)}]({posix.as_posix()})")
    return entries


def _protocol_tables(results) -> list:
    """Tables of ``ivgf eval``'s ``results`` ({protocol: {group: result}}) when it has more than the headline."""
    if not isinstance(results, Mapping) or not results:
        return []
    if len(results) == 1 and all(isinstance(groups, Mapping) and len(groups) <= 1 for groups in results.values()):
        return []
    tables = []
    for protocol, groups in results.items():
        if isinstance(groups, Mapping) and groups:
            missing = _MISSING.get(protocol, protocol)
            heading = f"#### Protocol `{protocol}` (modality missing at test time: {missing})"
            tables.append(f"{heading}\n\n{metrics_to_markdown(groups)}")
    return tables


def _evaluation_section(task: str, metrics, split: Optional[str], plots) -> str:
    if metrics is None:
        parts = ["No evaluation results are recorded for this checkpoint."]
    else:
        data = load_eval_json(metrics) if isinstance(metrics, (str, Path)) else metrics
        found, results, details = split_eval_results(data)
        if found != task:
            raise ValueError(f"a {task} card needs {task} metrics, got {found} metrics")
        split = split or details.get("split")
        where = f"on {split}" if split else "(the evaluation split was not recorded)"
        parts = [f"Results {where}, in %:", metrics_to_markdown(results)]
        parts += _protocol_tables(details.get("results"))
        settings = [
            (key, _format_value(value))
            for key, value in details.items()
            if key not in ("task", "split") and isinstance(value, (str, int, float, bool))
        ]
        if isinstance(details.get("settings"), Mapping):
            settings += _flatten(details["settings"])
        if settings:
            parts.append("Evaluation settings:\n\n" + "\n".join(f"- {key}: {value}" for key, value in settings))
    if plots:
        parts.append("### Plots\n\n" + "\n\n".join(_plot_entries(plots)))
    return "\n\n".join(parts)


def _read_template(template_dir: Path, name: str) -> str:
    path = template_dir / name
    if not path.is_file():
        raise FileNotFoundError(
            f"model card template {path} not found; the templates ship in the repository's model_cards/ folder"
        )
    return path.read_text(encoding="utf-8")


def _split_front_matter(text: str, path: Path) -> tuple:
    if not text.startswith("---\n") or "\n---\n" not in text[4:]:
        raise ValueError(f"{path} must start with YAML front matter between '---' lines")
    front, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(front) or {}, body


def render_model_card(
    task: str,
    repo_id: str,
    revision: str,
    metrics: Optional[Union[PathLike, Mapping]] = None,
    recipe: Optional[Union[PathLike, Mapping]] = None,
    split: Optional[str] = None,
    plots: Optional[Union[Sequence[str], Mapping[str, str]]] = None,
    *,
    class_names: Optional[Sequence[str]] = None,
    datasets: Optional[Sequence[str]] = None,
    base_model: Optional[Union[str, Sequence[str]]] = None,
    title: Optional[str] = None,
    summary: Optional[str] = None,
    license_name: Optional[str] = None,
    license_link: Optional[str] = None,
    template_dir: Optional[PathLike] = None,
) -> str:
    """The ``README.md`` text of a ``task`` checkpoint published as ``repo_id`` at ``revision``.

    Args:
        task: ``"segmentation"`` or ``"detection"`` (picks ``model_cards/<task>.md``).
        repo_id, revision: written into the usage snippet (``from_pretrained(repo_id, revision=revision,
            trust_remote_code=True)``); pin a commit hash or tag.
        metrics: an ``ivgf eval`` JSON file (or its loaded dict) -- the metrics dict at the top level or under a
            ``"metrics"`` key, one result or named groups (see :func:`split_eval_results`). Its ``"split"`` entry is
            used when ``split`` is None, and its other scalar entries are listed as evaluation settings.
        recipe: the training settings, a mapping or a JSON / YAML file; nested mappings become dotted keys.
        split: the evaluation split, e.g. ``"MFNet test (393 images)"``.
        plots: image paths relative to the repository root (or ``{caption: path}``), shown under the metrics.
        class_names: the classes by id (e.g. from ``config.id2label``).
        datasets: Hub dataset ids for the ``datasets`` metadata.
        base_model: Hub model id(s) this checkpoint was fine-tuned from (e.g. an ``ivgf init-checkpoint`` upload);
            left out of the metadata when None.
        title: the heading (default ``"IVGF <task>: <repo name>"``).
        summary: a paragraph under the heading.
        license_name, license_link: override the template's ``license_name`` / add ``license_link``.
        template_dir: a folder with ``<task>.md`` and ``foundation_licence.md`` (default ``model_cards/``).

    Raises:
        ValueError: unknown task, metrics of the other task or of no known kind, a bad plot path, or a repo id /
            revision that cannot be written into the snippet.
        FileNotFoundError: a template, metrics or recipe file is missing.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    _check_text(repo_id, "repo_id")
    _check_text(revision, "revision")
    template_dir = Path(template_dir) if template_dir is not None else TEMPLATE_DIR
    front, body = _split_front_matter(_read_template(template_dir, f"{task}.md"), template_dir / f"{task}.md")

    front["datasets"] = list(datasets) if datasets else None
    front["base_model"] = base_model if isinstance(base_model, (str, type(None))) else list(base_model)
    if license_name is not None:
        front["license_name"] = license_name
    if license_link is not None:
        front["license_link"] = license_link
    front = {key: value for key, value in front.items() if value not in (None, [], "")}

    classes = ""
    if class_names:
        names = ", ".join(f"`{name}`" for name in class_names)
        classes = f"It predicts {len(class_names)} classes: {names}."
    fields = {
        "title": title or f"IVGF {_TASK_TITLES[task]}: {repo_id.rsplit('/', 1)[-1]}",
        "summary": summary or "",
        "classes": classes,
        "repo_id": repo_id,
        "revision": revision,
        "evaluation": _evaluation_section(task, metrics, split, plots),
        "training": _training_section(recipe),
        "licence": _read_template(template_dir, _LICENCE_FILE).strip(),
    }
    text = string.Template(body).substitute(fields)
    while "\n\n\n" in text:  # empty optional paragraphs (summary, classes)
        text = text.replace("\n\n\n", "\n\n")
    front_matter = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return f"---\n{front_matter}---\n{text}"
