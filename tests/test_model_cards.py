"""Model cards: Hub metadata, the filled-in sections, input errors, and a usage snippet that really runs."""

import ast
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from PIL import Image

from ivgf_hf import get_config
from ivgf_hf.cards import TEMPLATE_DIR, render_model_card, split_eval_results
from ivgf_hf.hub import export_for_hub
from ivgf_hf.modeling import IVGFForSemanticSegmentation, IVGFImageProcessor

CLASSES = ["unlabeled", "car", "person"]
SEGMENTATION_RESULT = {
    "mIoU": 0.528,
    "pixel_accuracy": 0.714,
    "mean_accuracy": 0.667,
    "per_class_iou": {"unlabeled": 0.97, "car": 0.614, "person": None},
    "per_class_accuracy": {"unlabeled": 0.99, "car": 0.75, "person": None},
}
NIGHT_RESULT = {**SEGMENTATION_RESULT, "mIoU": 0.4}
DETECTION_RESULT = {
    "mAP": 0.312,
    "mAP50": 0.555,
    "mAP75": 0.301,
    "per_class_AP": {"car": 0.4, "person": 0.224},
    "per_class_AP50": {"car": 0.7, "person": 0.41},
}
REQUIRED_TAGS = {"custom_code", "infrared", "thermal", "rgb-t", "ivgf"}


def python_blocks(text: str) -> list:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_segmentation_card_from_an_eval_file(tmp_path):
    eval_file = tmp_path / "eval.json"
    eval_output = {  # the layout of ivgf eval's metrics.json
        "task": "segmentation",
        "num_samples": 393,
        "metrics": SEGMENTATION_RESULT,
        "results": {
            "none": {"all": SEGMENTATION_RESULT, "night": NIGHT_RESULT},
            "visible_missing": {"all": NIGHT_RESULT},
        },
        "class_names": CLASSES,
        "settings": {"headline_protocol": "none", "tta_flip": False, "tta_scales": [1.0]},
    }
    eval_file.write_text(json.dumps(eval_output))
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(
        yaml.safe_dump(
            {"optimizer": {"name": "adamw", "lr": 6e-5}, "max_steps": 40000, "augmentations": ["flip", "cutout_mix"]}
        )
    )
    text = render_model_card(
        "segmentation",
        "org/ivgf-base-mfnet",
        "0123abcd",
        metrics=eval_file,
        split="MFNet test (393 images)",
        recipe=recipe_file,
        plots={"Per-class IoU": "plots/per_class_iou.png"},
        class_names=CLASSES,
        datasets=["org/mfnet"],
        base_model="org/ivgf-base-init",
    )
    card_path = tmp_path / "README.md"
    card_path.write_text(text)
    card = ModelCard.load(card_path)  # a local file: parsed offline
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "image-segmentation"
    assert REQUIRED_TAGS <= set(data["tags"])
    assert data["license"] == "other" and data["license_name"]
    assert data["datasets"] == ["org/mfnet"] and data["base_model"] == "org/ivgf-base-init"
    assert data["metrics"] == ["mean_iou", "accuracy"]

    body = card.text
    assert "Results on MFNet test (393 images), in %:" in body
    assert "| mIoU | 52.8 |" in body and "| car | 61.4 | 75.0 |" in body and "| person | n/a | n/a |" in body
    assert "#### Protocol `none` (modality missing at test time: none)" in body
    assert "| Metric | all | night |" in body and "| mIoU | 52.8 | 40.0 |" in body
    assert "#### Protocol `visible_missing` (modality missing at test time: visible)" in body
    assert "- num_samples: 393" in body and "- headline_protocol: none" in body and "- tta_scales: 1" in body
    assert "![Per-class IoU](plots/per_class_iou.png)" in body
    assert "| `optimizer.lr` | 6e-05 |" in body and "| `augmentations` | flip, cutout_mix |" in body
    assert "It predicts 3 classes: `unlabeled`, `car`, `person`." in body
    (snippet,) = python_blocks(body)
    assert 'repo_id, revision = "org/ivgf-base-mfnet", "0123abcd"' in snippet
    assert snippet.count("trust_remote_code=True") == 2 and "revision=revision" in snippet
    assert "non-commercial research use" in body and "Chongqing University of Posts and Telecommunications" in body
    assert "MIT-licensed" in body and "## Intended use and limitations" in body
    assert "$" not in body  # every placeholder was filled


def test_detection_card_with_grouped_bare_metrics():
    text = render_model_card(
        "detection",
        "org/ivgf-m3fd",
        "v1.0",
        metrics={"all": DETECTION_RESULT, "night": DETECTION_RESULT},
        split="M3FD test",
    )
    card = ModelCard(text)
    data = card.data.to_dict()
    assert data["pipeline_tag"] == "object-detection" and data["metrics"] == ["map"]
    assert REQUIRED_TAGS <= set(data["tags"]) and "base_model" not in data and "datasets" not in data
    assert "| Metric | all | night |" in card.text and "| mAP50 | 55.5 | 55.5 |" in card.text
    (snippet,) = python_blocks(card.text)
    compile(snippet, "snippet", "exec")
    assert "AutoModelForObjectDetection.from_pretrained(repo_id, revision=revision, trust_remote_code=True)" in snippet
    assert "post_process_object_detection" in snippet and '"org/ivgf-m3fd", "v1.0"' in snippet


def test_card_without_results_says_so():
    card = ModelCard(render_model_card("segmentation", "org/ivgf-init", "main", summary="Fine-tune before use."))
    assert "No evaluation results are recorded for this checkpoint." in card.text
    assert "The training recipe was not recorded for this checkpoint." in card.text
    assert "Fine-tune before use." in card.text and "\n\n\n" not in card.text


def test_eval_json_formats():
    assert split_eval_results(SEGMENTATION_RESULT) == ("segmentation", SEGMENTATION_RESULT, {})
    task, metrics, details = split_eval_results({"task": "detection", "metrics": DETECTION_RESULT, "checkpoint": "x"})
    assert (task, metrics, details) == ("detection", DETECTION_RESULT, {"task": "detection", "checkpoint": "x"})
    with pytest.raises(ValueError, match="says task 'detection' but holds segmentation metrics"):
        split_eval_results({"task": "detection", "metrics": SEGMENTATION_RESULT})
    with pytest.raises(ValueError, match=r"got keys \['accuracy', 'loss'\]"):
        split_eval_results({"loss": 0.1, "accuracy": 0.5})
    with pytest.raises(ValueError, match="of one kind"):
        split_eval_results({"day": SEGMENTATION_RESULT, "night": DETECTION_RESULT})


def test_card_input_errors(tmp_path):
    with pytest.raises(ValueError, match="task must be one of"):
        render_model_card("classification", "org/x", "main")
    with pytest.raises(ValueError, match="a segmentation card needs segmentation metrics, got detection"):
        render_model_card("segmentation", "org/x", "main", metrics=DETECTION_RESULT)
    for plot in ("/abs/plot.png", "../up.png", "plots/table.csv"):
        with pytest.raises(ValueError, match="relative to the repository root"):
            render_model_card("segmentation", "org/x", "main", plots=[plot])
    with pytest.raises(ValueError, match="repo_id must be"):
        render_model_card("segmentation", 'org/x"; import os', "main")
    with pytest.raises(FileNotFoundError, match="metrics file not found"):
        render_model_card("segmentation", "org/x", "main", metrics=tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json"):
        render_model_card("segmentation", "org/x", "main", metrics=tmp_path / "broken.json")
    with pytest.raises(FileNotFoundError, match="model card template"):
        render_model_card("segmentation", "org/x", "main", template_dir=tmp_path)
    assert (TEMPLATE_DIR / "segmentation.md").is_file() and (TEMPLATE_DIR / "detection.md").is_file()


@pytest.mark.slow
def test_usage_snippet_runs_on_an_exported_folder(tmp_path):
    torch.manual_seed(0)
    config = get_config("tiny", id2label=dict(enumerate(CLASSES)), label2id={n: i for i, n in enumerate(CLASSES)})
    model = IVGFForSemanticSegmentation(config).eval()
    folder = tmp_path / "ivgf-tiny"
    card = render_model_card("segmentation", str(folder), "main", class_names=CLASSES)
    export_for_hub(model, IVGFImageProcessor(), folder, card=card, check=False)
    assert (folder / "README.md").read_text() == card

    work = tmp_path / "work"
    work.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(work / "visible.png")
    Image.fromarray(rng.integers(0, 256, (48, 64), dtype=np.uint8)).save(work / "infrared.png")
    (snippet,) = python_blocks(ModelCard.load(folder / "README.md").text)
    script = 'import sys\nsys.modules["ivgf_hf"] = None  # only the folder\'s code may run\n' + snippet
    environment = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    environment.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=work, env=environment, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    counts = ast.literal_eval(result.stdout.strip().splitlines()[-1])  # {class name: pixels}
    assert set(counts) <= set(CLASSES) and sum(counts.values()) == 48 * 64
