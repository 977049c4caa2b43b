"""Saved folders load with trust_remote_code where ivgf_hf cannot be imported, with identical outputs."""

import json

import pytest
import torch
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForSemanticSegmentation

from ivgf_hf import get_config
from ivgf_hf.auto import register_auto_classes
from ivgf_hf.hub import ExportCheckError, check_remote_load, export_for_hub
from ivgf_hf.modeling import IVGFForSemanticSegmentation, IVGFImageProcessor, IVGFModel


@pytest.fixture(scope="module")
def segmentation_model():
    torch.manual_seed(0)
    return IVGFForSemanticSegmentation(get_config("tiny", num_labels=3)).eval()


def test_export_writes_a_self_contained_folder_that_loads_as_remote_code(segmentation_model, tmp_path):
    folder = export_for_hub(segmentation_model, IVGFImageProcessor(), tmp_path / "ivgf-tiny")
    files = sorted(p.name for p in folder.iterdir())
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "configuration_ivgf.py",
                 "modeling_ivgf.py", "encoder_ivgf.py", "fusion_ivgf.py", "image_processing_ivgf.py"):
        assert name in files
    assert "__init__.py" not in files and not any(name.endswith((".bin", ".pt")) for name in files)
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForSemanticSegmentation"] == "modeling_ivgf.IVGFForSemanticSegmentation"
    processor_map = json.loads((folder / "preprocessor_config.json").read_text())["auto_map"]
    assert processor_map["AutoImageProcessor"] == "image_processing_ivgf.IVGFImageProcessor"


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
    config = AutoConfig.for_model("ivgf", num_labels=3, **{k: v for k, v in get_config("tiny").to_diff_dict().items() if k != "model_type"})
    assert type(AutoModelForSemanticSegmentation.from_config(config)) is IVGFForSemanticSegmentation
    assert type(AutoModel.from_config(config)) is IVGFModel
    segmentation_model.save_pretrained(tmp_path)
    IVGFImageProcessor().save_pretrained(tmp_path)
    loaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path)
    assert type(loaded) is IVGFForSemanticSegmentation
    assert type(AutoImageProcessor.from_pretrained(tmp_path)) is IVGFImageProcessor
