"""Saved folders load with trust_remote_code where ivgf_hf cannot be imported, with identical outputs."""

import json
import os
import shutil
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForSemanticSegmentation

from ivgf_hf import get_config
from ivgf_hf.auto import register_auto_classes
from ivgf_hf.hub import ExportCheckError, check_remote_load, export_for_hub
from ivgf_hf.modeling import (
    IVGFBackbone,
    IVGFForObjectDetection,
    IVGFForSemanticSegmentation,
    IVGFImageProcessor,
    IVGFModel,
)


@pytest.fixture(scope="module")
def segmentation_model():
    torch.manual_seed(0)
    return IVGFForSemanticSegmentation(get_config("tiny", num_labels=3)).eval()


@pytest.mark.slow
def test_export_writes_a_self_contained_folder_that_loads_as_remote_code(segmentation_model, tmp_path):
    folder = export_for_hub(segmentation_model, IVGFImageProcessor(), tmp_path / "ivgf-tiny")
    files = sorted(p.name for p in folder.iterdir())
    for name in (
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "configuration_ivgf.py",
        "modeling_ivgf.py",
        "encoder_ivgf.py",
        "fusion_ivgf.py",
        "image_processing_ivgf.py",
    ):
        assert name in files
    assert "__init__.py" not in files and not any(name.endswith((".bin", ".pt")) for name in files)
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForSemanticSegmentation"] == "modeling_ivgf.IVGFForSemanticSegmentation"
    processor_map = json.loads((folder / "preprocessor_config.json").read_text())["auto_map"]
    assert processor_map["AutoImageProcessor"] == "image_processing_ivgf.IVGFImageProcessor"


@pytest.mark.slow
def test_export_refuses_existing_folders_and_failed_checks(segmentation_model, tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="overwrite"):
        export_for_hub(segmentation_model, IVGFImageProcessor(), target, check=False)
    assert (target / "notes.txt").read_text() == "user data"
    with pytest.raises(FileExistsError, match=r"mine holds entries this export does not write \(notes.txt\)"):
        export_for_hub(segmentation_model, IVGFImageProcessor(), target, overwrite=True, check=False)
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    (target / "notes.txt").unlink()
    export_for_hub(segmentation_model, IVGFImageProcessor(), target, check=False)
    export_for_hub(segmentation_model, IVGFImageProcessor(), target, overwrite=True, check=False)  # a re-export
    assert (target / "model.safetensors").is_file() and not list(tmp_path.glob(".mine-*"))

    torch.manual_seed(1)
    other = IVGFForSemanticSegmentation(get_config("tiny", num_labels=3)).eval()
    folder = export_for_hub(other, IVGFImageProcessor(), tmp_path / "other", check=False)
    with pytest.raises(ExportCheckError, match="model.logits"):
        check_remote_load(folder, segmentation_model, IVGFImageProcessor())


def test_in_process_auto_classes(segmentation_model, tmp_path):
    register_auto_classes()
    config = AutoConfig.for_model(
        "ivgf", num_labels=3, **{k: v for k, v in get_config("tiny").to_diff_dict().items() if k != "model_type"}
    )
    assert type(AutoModelForSemanticSegmentation.from_config(config)) is IVGFForSemanticSegmentation
    assert type(AutoModel.from_config(config)) is IVGFModel
    segmentation_model.save_pretrained(tmp_path)
    IVGFImageProcessor().save_pretrained(tmp_path)
    loaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path)
    assert type(loaded) is IVGFForSemanticSegmentation
    assert type(AutoImageProcessor.from_pretrained(tmp_path)) is IVGFImageProcessor


COMPAT_PYTHON = os.environ.get("IVGF_COMPAT_PYTHON")
INTERPRETERS = [pytest.param(None, id="transformers-5")] + (
    [pytest.param(COMPAT_PYTHON, id="transformers-4.57")] if COMPAT_PYTHON else []
)


@pytest.mark.parametrize("python", INTERPRETERS)
@pytest.mark.slow
def test_plain_save_pretrained_folder_loads_as_remote_code(segmentation_model, tmp_path, python):
    """No export_for_hub, no register_for_auto_class: model.save_pretrained alone makes a loadable folder."""
    segmentation_model.save_pretrained(tmp_path)
    IVGFImageProcessor().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_ivgf.IVGFConfig",
        "AutoModelForSemanticSegmentation": "modeling_ivgf.IVGFForSemanticSegmentation",
    }
    check_remote_load(tmp_path, segmentation_model, IVGFImageProcessor(), python=python)  # fresh process, no ivgf_hf


def test_detector_and_backbone_save_pretrained_write_their_auto_map(tmp_path):
    for model, auto_class, reference in (
        (
            IVGFForObjectDetection(get_config("tiny")),
            "AutoModelForObjectDetection",
            "detection_ivgf.IVGFForObjectDetection",
        ),
        (IVGFBackbone(get_config("tiny")), "AutoBackbone", "modeling_ivgf.IVGFBackbone"),
        (IVGFModel(get_config("tiny")), "AutoModel", "modeling_ivgf.IVGFModel"),
    ):
        model.save_pretrained(tmp_path / auto_class)
        config = json.loads((tmp_path / auto_class / "config.json").read_text())
        assert config["auto_map"] == {"AutoConfig": "configuration_ivgf.IVGFConfig", auto_class: reference}
        assert ("custom_pipelines" in config) == (auto_class == "AutoModelForObjectDetection")
    # the base model of a saved task model names no pipeline (its folder has no task auto class)
    base = IVGFModel.from_pretrained(tmp_path / "AutoModelForObjectDetection")
    base.save_pretrained(tmp_path / "base")
    assert "custom_pipelines" not in json.loads((tmp_path / "base" / "config.json").read_text())


class FakeHub:
    """Stands in for huggingface_hub's repo creation and folder upload: uploads are copied under ``root/repo_id``."""

    def __init__(self, root):
        self.root = root
        self.uploads = []

    def create_repo(self, repo_id, *args, **kwargs):
        return SimpleNamespace(repo_id=repo_id, url=f"https://hub.invalid/{repo_id}")

    def upload_folder(self, repo_id, folder_path, ignore_patterns=(), **kwargs):
        target = self.root / repo_id
        ignored = shutil.ignore_patterns(*(ignore_patterns or ()))
        shutil.copytree(folder_path, target, ignore=ignored, dirs_exist_ok=True)
        self.uploads.append(repo_id)
        return SimpleNamespace(commit_url=f"https://hub.invalid/{repo_id}/commit/0", oid="0" * 40)


@pytest.mark.slow
def test_trainer_push_to_hub_publishes_a_loadable_repo(segmentation_model, tmp_path, monkeypatch):
    import transformers.trainer
    from transformers import Trainer, TrainingArguments

    hub = FakeHub(tmp_path / "hub")
    if hasattr(transformers.trainer, "hf_api"):  # transformers 5.x
        monkeypatch.setattr(transformers.trainer, "hf_api", lambda: hub)
    else:  # 4.x
        monkeypatch.setattr(transformers.trainer, "create_repo", hub.create_repo)
        monkeypatch.setattr(transformers.trainer, "upload_folder", hub.upload_folder)
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        push_to_hub=True,
        hub_model_id="ivgf-org/ivgf-tiny",
        report_to=[],
        use_cpu=True,
    )
    trainer = Trainer(model=segmentation_model, args=args, processing_class=IVGFImageProcessor())
    trainer.push_to_hub()
    assert hub.uploads == ["ivgf-org/ivgf-tiny"]
    repo = tmp_path / "hub" / "ivgf-org" / "ivgf-tiny"
    assert {"configuration_ivgf.py", "modeling_ivgf.py", "pipeline_ivgf.py", "preprocessor_config.json"} <= {
        path.name for path in repo.iterdir()
    }
    check_remote_load(repo, segmentation_model.eval(), IVGFImageProcessor())  # fresh process, no ivgf_hf
