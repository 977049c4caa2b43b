"""Export IVGF models as self-contained Hub folders, prove they load as remote code, and push them.

``export_for_hub`` writes safetensors weights, ``config.json`` with an ``auto_map``, the processor config, the
code files of ``ivgf_hf.modeling`` and an optional model card, then reloads the folder in a fresh Python process
where ``ivgf_hf`` cannot be imported (``trust_remote_code=True``) and compares outputs on a fixed input. The
folder only appears at its destination when that check passes.

``check_export_folder`` re-proves an existing folder before a push: its code files must be byte-identical to the
installed ``ivgf_hf.modeling``, the installed library loads it in-process as the reference, and the remote-code load
in a fresh process must reproduce the reference's outputs. ``push_folder`` then uploads the folder in one commit with
``huggingface_hub``. Nothing here ever writes into or deletes from a folder that is being checked or pushed.
"""

import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Mapping, Optional, Union

import torch

__all__ = [
    "AUTO_CLASS_BY_MODEL",
    "TASK_BY_AUTO_CLASS",
    "ExportCheckError",
    "HubFolderError",
    "HubPushError",
    "HubUnreachableError",
    "ExportFolder",
    "PushResult",
    "export_for_hub",
    "check_remote_load",
    "inspect_export_folder",
    "check_export_folder",
    "push_folder",
]

AUTO_CLASS_BY_MODEL = {
    "IVGFModel": "AutoModel",
    "IVGFBackbone": "AutoBackbone",
    "IVGFForSemanticSegmentation": "AutoModelForSemanticSegmentation",
    "IVGFForObjectDetection": "AutoModelForObjectDetection",
}
TASK_BY_AUTO_CLASS = {"AutoModelForSemanticSegmentation": "segmentation", "AutoModelForObjectDetection": "detection"}
# Most specific first: the auto class that names a folder's model when its auto_map has several.
_AUTO_CLASS_PRIORITY = ("AutoModelForObjectDetection", "AutoModelForSemanticSegmentation", "AutoModel", "AutoBackbone")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# Files of an earlier export that a push deletes from the repo when the new folder no longer has them.
_REPLACED_SUFFIXES = (".py", ".safetensors", ".safetensors.index.json") + PICKLE_SUFFIXES


class ExportCheckError(RuntimeError):
    """The exported folder did not reproduce the model's outputs when loaded as remote code."""


class HubFolderError(ValueError):
    """A folder is not a complete IVGF export, holds pickle files, or its code differs from the installed library."""


class HubPushError(RuntimeError):
    """The Hub refused a push (authentication, permissions, a missing revision...). Nothing was uploaded."""


class HubUnreachableError(HubPushError):
    """The Hub could not be reached (no network, ``HF_HUB_OFFLINE=1``). Nothing was uploaded."""


_REMOTE_LOAD_SCRIPT = r"""
import sys
sys.modules["ivgf_hf"] = None  # the package must not be importable: everything comes from the folder
import torch
import transformers
folder, inputs_path, outputs_path, auto_class = sys.argv[1:5]
model = getattr(transformers, auto_class).from_pretrained(folder, trust_remote_code=True, dtype=torch.float32).eval()
processor = transformers.AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
inputs = torch.load(inputs_path)
with torch.no_grad():
    output = model(**inputs["model"])
processed = processor(**inputs["processor"], return_tensors="pt")
torch.save({"output": {k: v for k, v in output.items()}, "processed": dict(processed)}, outputs_path)
"""


def _fixed_inputs(config, size: int = 64) -> dict:
    """A seeded image pair, as raw uint8 images for the processor and as tensors for the model."""
    generator = torch.Generator().manual_seed(0)
    visible = torch.randint(0, 256, (3, size, size), generator=generator, dtype=torch.uint8)
    infrared = torch.randint(0, 256, (1, size, size), generator=generator, dtype=torch.uint8)
    model_inputs = {
        "pixel_values": torch.randn(1, config.num_channels, size, size, generator=generator),
        "pixel_values_ir": torch.randn(1, config.num_channels_ir, size, size, generator=generator),
    }
    return {"model": model_inputs, "processor": {"images": [visible], "images_ir": [infrared]}}


def _compare(expected, actual, path: str, rtol: float) -> list:
    """Names of the (nested) entries where ``actual`` differs from ``expected`` by more than ``rtol`` of its scale."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(actual, torch.Tensor) or expected.shape != actual.shape:
            return [path]
        if expected.numel() == 0:
            return []
        expected, actual = expected.double(), actual.double()
        scale = expected.abs().max().item()
        return [] if (expected - actual).abs().max().item() <= rtol * scale + 1e-12 else [path]
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [path]
        return [m for key in expected for m in _compare(expected[key], actual.get(key), f"{path}.{key}", rtol)]
    if isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)) or len(actual) != len(expected):
            return [path]
        return [m for i, (e, a) in enumerate(zip(expected, actual)) for m in _compare(e, a, f"{path}[{i}]", rtol)]
    return [] if expected == actual else [path]


def check_remote_load(
    folder: Union[str, Path],
    model,
    processor,
    rtol: float = 1e-4,
    timeout: int = 600,
    python: Optional[Union[str, Path]] = None,
) -> None:
    """Reload ``folder`` in a fresh process without ``ivgf_hf`` and compare it with ``model`` and ``processor``.

    Every output tensor must match within ``rtol`` times its largest magnitude (fresh models have tiny logits, so
    a fixed absolute tolerance would prove nothing).

    Args:
        python: the interpreter of the fresh process (default: this one). Point it at an environment with another
            transformers version (e.g. ``.venv-tf457``, see ``scripts/setup_compat_venv.sh``) to prove the folder
            loads there too.

    Raises:
        ExportCheckError: the load failed or an output differs (the message names the output and the error).
    """
    folder = Path(folder)
    auto_class = AUTO_CLASS_BY_MODEL[type(model).__name__]
    inputs = _fixed_inputs(model.config)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        expected_output = {k: v for k, v in model(**inputs["model"]).items()}
    model.train(was_training)
    expected_processed = dict(processor(**inputs["processor"], return_tensors="pt"))
    interpreter = str(python) if python is not None else sys.executable
    with tempfile.TemporaryDirectory(prefix="ivgf-check-") as work:
        inputs_path, outputs_path = os.path.join(work, "inputs.pt"), os.path.join(work, "outputs.pt")
        torch.save(inputs, inputs_path)
        environment = {**os.environ, "HF_HOME": os.path.join(work, "hf_home"), "HF_HUB_OFFLINE": "1"}
        environment.pop("PYTHONPATH", None)
        result = subprocess.run(
            [interpreter, "-c", _REMOTE_LOAD_SCRIPT, str(folder.resolve()), inputs_path, outputs_path, auto_class],
            cwd=work,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise ExportCheckError(
                f"loading {folder} with trust_remote_code ({interpreter}) failed:\n{result.stderr[-3000:]}"
            )
        actual = torch.load(outputs_path)
    mismatches = _compare(expected_output, actual["output"], "model", rtol)
    mismatches += _compare(expected_processed, actual["processed"], "processor", rtol)
    if mismatches:
        raise ExportCheckError(f"{folder} loaded as remote code ({interpreter}) differs from the model: {mismatches}")


def export_for_hub(
    model,
    processor,
    folder: Union[str, Path],
    card: Optional[str] = None,
    overwrite: bool = False,
    check: bool = True,
) -> Path:
    """Write a Hub-ready folder for ``model`` and ``processor`` and verify it (see the module docstring).

    Args:
        model: an IVGF model (``IVGFModel``, ``IVGFBackbone``, ``IVGFForSemanticSegmentation`` or
            ``IVGFForObjectDetection``).
        processor: its ``IVGFImageProcessor``.
        folder: destination; must not exist (or be empty) unless ``overwrite``.
        card: model card text written as ``README.md`` (e.g. from :func:`ivgf_hf.cards.render_model_card`).
        overwrite: replace an earlier export in ``folder``; a folder holding any entry this export does not write
            (notes, ``.git``, other weights) is refused with ``FileExistsError``, nothing deleted.
        check: run :func:`check_remote_load` before moving the folder into place.

    Returns:
        The destination folder.
    """
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise FileExistsError(f"{folder} exists and is not empty; pass overwrite=True to replace it")
    if type(model).__name__ not in AUTO_CLASS_BY_MODEL:
        raise TypeError(f"cannot export {type(model).__name__}; expected one of {sorted(AUTO_CLASS_BY_MODEL)}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        if card is not None:
            (staging / "README.md").write_text(card, encoding="utf-8")
        pickles = [p.name for p in staging.iterdir() if p.name.endswith(PICKLE_SUFFIXES)]
        if pickles:
            raise ExportCheckError(f"pickle files in the export: {pickles}")
        auto_map = json.loads((staging / "config.json").read_text())["auto_map"]
        if AUTO_CLASS_BY_MODEL[type(model).__name__] not in auto_map:
            auto_class = AUTO_CLASS_BY_MODEL[type(model).__name__]
            raise ExportCheckError(f"config.json auto_map lacks {auto_class}: {auto_map}")
        foreign = sorted(p.name for p in folder.iterdir() if not (staging / p.name).exists()) if folder.exists() else []
        if foreign:
            raise FileExistsError(
                f"{folder} holds entries this export does not write ({', '.join(foreign)}); overwrite replaces an "
                "earlier export only: move them away or export to another folder"
            )
        if check:
            check_remote_load(staging, model, processor)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return folder


@dataclass
class ExportFolder:
    """What :func:`inspect_export_folder` found in an exported folder.

    Attributes:
        path: the folder.
        model_class: the model's class name (``"IVGFForSemanticSegmentation"``...), from ``config.json``'s auto_map.
        auto_class: the ``transformers`` auto class that loads it.
        files: every file to upload, as sorted POSIX paths relative to ``path`` (hidden files and folders skipped).
        id2label: the configuration's class names by id.
    """

    path: Path
    model_class: str
    auto_class: str
    files: list
    id2label: dict = field(default_factory=dict)

    @property
    def task(self) -> Optional[str]:
        """``"segmentation"``, ``"detection"``, or None for a base model / backbone."""
        return TASK_BY_AUTO_CLASS.get(self.auto_class)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise HubFolderError(f"cannot read {path}: {error}") from error
    if not isinstance(data, dict):
        raise HubFolderError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _listed_files(folder: Path) -> list:
    """Files under ``folder`` as sorted POSIX paths, except hidden ones (``.cache/``, ``.git/``) and ``__pycache__``."""
    files = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if any(part.startswith(".") or part == "__pycache__" for part in relative.parts) or not path.is_file():
            continue
        files.append(relative.as_posix())
    return sorted(files)


def _model_entry(config_path: Path, auto_map: Mapping) -> tuple:
    for auto_class in _AUTO_CLASS_PRIORITY:
        if auto_class in auto_map:
            module, _, class_name = str(auto_map[auto_class]).rpartition(".")
            if class_name not in AUTO_CLASS_BY_MODEL or "--" in module:
                raise HubFolderError(
                    f"{config_path}: auto_map[{auto_class!r}] = {auto_map[auto_class]!r} is not an IVGF model class in "
                    "a file of the folder"
                )
            return auto_class, class_name, module
    raise HubFolderError(
        f"{config_path}: auto_map {dict(auto_map)} names no model class; export the folder with "
        "ivgf_hf.hub.export_for_hub (it registers the auto classes)"
    )


def inspect_export_folder(folder: Union[str, Path]) -> ExportFolder:
    """Check that ``folder`` is a complete IVGF export with safetensors weights only, and describe it.

    Raises:
        HubFolderError: not a folder, pickle files, or a missing / malformed ``config.json``, weights,
            ``preprocessor_config.json`` or code file (the message names it).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise HubFolderError(f"{folder} is not a folder")
    files = _listed_files(folder)
    pickles = [name for name in files if name.endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise HubFolderError(
            f"{folder} holds pickle files {pickles}: only safetensors weights are pushed (pickle files run code when "
            "loaded); remove them or export the model again with export_for_hub"
        )
    if "config.json" not in files:
        raise HubFolderError(f"{folder} has no config.json; is it a model folder written by export_for_hub?")
    config = _read_json(folder / "config.json")
    auto_map = config.get("auto_map")
    if not isinstance(auto_map, dict) or "AutoConfig" not in auto_map:
        raise HubFolderError(
            f"{folder / 'config.json'} has no auto_map with AutoConfig, so it cannot load with trust_remote_code; "
            "export it with ivgf_hf.hub.export_for_hub"
        )
    auto_class, model_class, module = _model_entry(folder / "config.json", auto_map)

    if "model.safetensors.index.json" in files:
        index = _read_json(folder / "model.safetensors.index.json")
        shards = sorted(set(index.get("weight_map", {}).values()))
        missing_shards = [shard for shard in shards if shard not in files]
        if not shards or missing_shards:
            missing = missing_shards or shards
            raise HubFolderError(f"{folder}: model.safetensors.index.json lists missing shards {missing}")
    elif "model.safetensors" not in files:
        raise HubFolderError(f"{folder} has no model.safetensors (nor a sharded model.safetensors.index.json)")

    if "preprocessor_config.json" not in files:
        raise HubFolderError(f"{folder} has no preprocessor_config.json; save the image processor into it")
    processor_map = _read_json(folder / "preprocessor_config.json").get("auto_map", {})
    if "AutoImageProcessor" not in processor_map:
        raise HubFolderError(f"{folder / 'preprocessor_config.json'} has no auto_map['AutoImageProcessor']")

    modules = {module, str(auto_map["AutoConfig"]).rpartition(".")[0]}
    modules.add(str(processor_map["AutoImageProcessor"]).rpartition(".")[0])
    missing_code = sorted(f"{name}.py" for name in modules if f"{name}.py" not in files)
    nested_code = [name for name in files if name.endswith(".py") and "/" in name]
    if missing_code or nested_code:
        raise HubFolderError(
            f"{folder}: code files missing {missing_code}"
            if missing_code
            else f"{folder}: remote code must be flat, found {nested_code}"
        )
    id2label = {int(key): value for key, value in config.get("id2label", {}).items()}
    return ExportFolder(folder, model_class, auto_class, files, id2label)


def _check_code_matches_package(export: ExportFolder) -> None:
    """Each ``*.py`` of the folder must be byte-identical to the installed ``ivgf_hf.modeling`` file of that name."""
    from . import __version__, modeling

    installed = Path(modeling.__file__).resolve().parent
    for name in (name for name in export.files if name.endswith(".py")):
        reference = installed / name
        if not reference.is_file():
            raise HubFolderError(f"{export.path / name} is not a file of ivgf_hf {__version__}'s modeling package")
        if not filecmp.cmp(export.path / name, reference, shallow=False):
            raise HubFolderError(
                f"{export.path / name} differs from the installed ivgf_hf {__version__} ({reference}): the folder "
                "was exported by another version or edited by hand. Export the model again with export_for_hub so "
                "the Hub code is the library's code"
            )


def _model_classes() -> dict:
    from .modeling.detection_ivgf import IVGFForObjectDetection
    from .modeling.modeling_ivgf import IVGFBackbone, IVGFForSemanticSegmentation, IVGFModel

    return {cls.__name__: cls for cls in (IVGFModel, IVGFBackbone, IVGFForSemanticSegmentation, IVGFForObjectDetection)}


def check_export_folder(
    folder: Union[str, Path], python: Optional[Union[str, Path]] = None, rtol: float = 1e-4, timeout: int = 600
) -> ExportFolder:
    """Prove an existing export before pushing it: same code as the installed library, same outputs as remote code.

    The installed ``ivgf_hf`` loads the folder in this process (weights must fill the model exactly) and serves as
    the reference of :func:`check_remote_load`, which reloads the folder with ``trust_remote_code=True`` in a fresh
    process (``python``) where ``ivgf_hf`` cannot be imported.

    Raises:
        HubFolderError: see :func:`inspect_export_folder`; a code file differs from the installed library; the
            weights do not fill the model exactly.
        ExportCheckError: the remote-code load failed or differs.
    """
    from .modeling.image_processing_ivgf import IVGFImageProcessor

    export = inspect_export_folder(folder)
    _check_code_matches_package(export)
    try:
        model, info = _model_classes()[export.model_class].from_pretrained(
            export.path, dtype=torch.float32, output_loading_info=True
        )
    except (RuntimeError, OSError, ValueError) as error:
        raise HubFolderError(f"the installed ivgf_hf cannot load {export.path}: {error}") from error
    problems = {kind: sorted(keys) for kind, keys in info.items() if kind != "error_msgs" and keys}
    if problems:
        raise HubFolderError(f"{export.path}: the weights do not fit {export.model_class}'s configuration: {problems}")
    processor = IVGFImageProcessor.from_pretrained(export.path)
    check_remote_load(export.path, model.eval(), processor, rtol=rtol, timeout=timeout, python=python)
    return export


@dataclass
class PushResult:
    """What :func:`push_folder` sent (or, with ``dry_run``, would send).

    Attributes:
        repo_id, revision, create_pr: the target as requested.
        files: paths in the repo that the commit adds or replaces, sorted.
        deleted: code and weight files of an earlier export that the commit removes (empty for a dry run).
        commit_url, pr_url: as reported by the Hub (None for a dry run).
    """

    repo_id: str
    revision: Optional[str]
    create_pr: bool
    files: list
    deleted: list = field(default_factory=list)
    commit_url: Optional[str] = None
    pr_url: Optional[str] = None
    dry_run: bool = False


def _hub_offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return bool(constants.HF_HUB_OFFLINE) or flag in {"1", "ON", "YES", "TRUE"}


def _uploads(export: ExportFolder, card: Optional[str], extra_files: Optional[Mapping]) -> dict:
    """``{path_in_repo: local Path or bytes}`` for every file of the commit."""
    uploads = {name: export.path / name for name in export.files}
    if card is not None:
        uploads["README.md"] = card.encode("utf-8")
    for path_in_repo, local in (extra_files or {}).items():
        local = Path(local)
        if path_in_repo in uploads:
            raise HubFolderError(f"{path_in_repo} is both a file of {export.path} and an extra file ({local})")
        in_repo = PurePosixPath(path_in_repo)
        if in_repo.is_absolute() or ".." in in_repo.parts or path_in_repo.endswith(PICKLE_SUFFIXES):
            raise HubFolderError(f"extra file {path_in_repo!r}: give a relative, non-pickle path inside the repo")
        if not local.is_file():
            raise HubFolderError(f"extra file for {path_in_repo} not found: {local}")
        uploads[path_in_repo] = local
    return uploads


def push_folder(
    folder: Union[str, Path],
    repo_id: str,
    *,
    revision: Optional[str] = None,
    create_pr: bool = False,
    private: Optional[bool] = None,
    token: Optional[str] = None,
    commit_message: Optional[str] = None,
    commit_description: Optional[str] = None,
    card: Optional[str] = None,
    extra_files: Optional[Mapping] = None,
    dry_run: bool = False,
    check: bool = True,
    python: Optional[Union[str, Path]] = None,
    endpoint: Optional[str] = None,
) -> PushResult:
    """Check an exported folder and upload it to the Hub model repo ``repo_id`` in one commit.

    The repo is created if absent (``exist_ok``), and so is the branch ``revision`` (from ``main``) unless it is a
    ``refs/pr/N`` reference. Code and weight files (``*.py``, ``*.safetensors``, pickles) that the repo holds at that
    revision but the folder lacks are deleted in the same commit, so a repo never mixes two exports.

    Args:
        folder: a folder written by :func:`export_for_hub` (checked with :func:`check_export_folder`).
        repo_id: ``"namespace/name"`` (or ``"name"`` for the token's user).
        revision: branch (created if absent) or ``refs/pr/N`` to commit to; None for ``main``.
        create_pr: open a pull request against ``revision`` instead of committing to it.
        private: visibility of a newly created repo (None: the Hub's default; an existing repo is not changed).
        token: a Hugging Face token; None uses ``HF_TOKEN`` or the token saved by ``hf auth login``.
        commit_message: default ``"Upload <model class> with ivgf-hf <version>"``.
        card: model card text uploaded as ``README.md`` in place of the folder's own (the folder is not changed).
        extra_files: ``{path_in_repo: local file}`` uploaded too (e.g. plots the card links to).
        dry_run: check everything and return the file list without contacting the Hub.
        check: run :func:`check_export_folder` (otherwise only :func:`inspect_export_folder`).
        python: interpreter of the remote-code check.
        endpoint: Hub URL (default ``HF_ENDPOINT`` or https://huggingface.co).

    Raises:
        HubUnreachableError: ``HF_HUB_OFFLINE=1`` (checked first, without a dry run) or no connection.
        HubPushError: the Hub refused (no or wrong token, no write access, unknown revision...).
        HubFolderError, ExportCheckError: the folder failed its checks (nothing was sent).
        ValueError: ``repo_id`` is not a valid repo id.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub import errors as hub_errors
    from huggingface_hub.utils import validate_repo_id

    from . import __version__

    validate_repo_id(repo_id)
    folder = Path(folder)
    if not dry_run and _hub_offline():
        raise HubUnreachableError(
            f"HF_HUB_OFFLINE is set, so nothing can be pushed to {repo_id}; {folder} is unchanged. Unset "
            "HF_HUB_OFFLINE to push, or pass dry_run=True (--dry-run) to check the folder and list its files"
        )
    export = check_export_folder(folder, python=python) if check else inspect_export_folder(folder)
    uploads = _uploads(export, card, extra_files)
    result = PushResult(repo_id, revision, create_pr, sorted(uploads), dry_run=dry_run)
    if dry_run:
        return result

    api = HfApi(endpoint=endpoint, token=token)
    message = commit_message or f"Upload {export.model_class} with ivgf-hf {__version__}"
    untouched = f"nothing was uploaded and {folder} is unchanged"
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision is not None and not revision.startswith("refs/"):
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
        existing = api.list_repo_files(repo_id, revision=revision, repo_type="model")
        result.deleted = sorted(p for p in existing if p.endswith(_REPLACED_SUFFIXES) and p not in uploads)
        operations = [
            CommitOperationAdd(path_in_repo=path, path_or_fileobj=data if isinstance(data, bytes) else str(data))
            for path, data in sorted(uploads.items())
        ]
        operations += [CommitOperationDelete(path_in_repo=path) for path in result.deleted]
        info = api.create_commit(
            repo_id,
            operations,
            commit_message=message,
            commit_description=commit_description,
            revision=revision,
            create_pr=create_pr,
            repo_type="model",
        )
    except hub_errors.OfflineModeIsEnabled as error:
        raise HubUnreachableError(f"HF_HUB_OFFLINE is set ({error}); {untouched}") from error
    except hub_errors.LocalTokenNotFoundError as error:
        raise HubPushError(
            f"no Hugging Face token: run `hf auth login`, set HF_TOKEN or pass a token; {untouched}"
        ) from error
    except hub_errors.HfHubHTTPError as error:
        status = getattr(getattr(error, "response", None), "status_code", "?")
        raise HubPushError(f"the Hub refused the push to {repo_id} (HTTP {status}): {error}; {untouched}") from error
    except (getattr(hub_errors, "HTTPError", OSError), OSError) as error:
        raise HubUnreachableError(
            f"cannot reach the Hugging Face Hub at {api.endpoint} ({type(error).__name__}: {error}); {untouched}. "
            "Check the network or HF_ENDPOINT and push again"
        ) from error
    result.commit_url = getattr(info, "commit_url", None)
    result.pr_url = getattr(info, "pr_url", None)
    return result
