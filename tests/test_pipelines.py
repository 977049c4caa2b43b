"""The RGB-T pipelines: in-process after ``import ivgf_hf``, and from a saved folder where ivgf_hf is not importable."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

import ivgf_hf  # noqa: F401  (registers the pipelines)
from ivgf_hf import get_config
from ivgf_hf.modeling import IVGFForObjectDetection, IVGFForSemanticSegmentation, IVGFImageProcessor

COMPAT_PYTHON = os.environ.get("IVGF_COMPAT_PYTHON")
INTERPRETERS = [pytest.param(sys.executable, id="transformers-5")] + (
    [pytest.param(COMPAT_PYTHON, id="transformers-4.57")] if COMPAT_PYTHON else []
)
HEIGHT, WIDTH = 72, 100  # not multiples of 32: the processor pads, the pipeline crops back


def pair(seed=0):
    generator = np.random.default_rng(seed)
    visible = generator.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    infrared = generator.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8)
    return visible, infrared


@pytest.fixture(scope="module")
def segmenter():
    torch.manual_seed(0)
    config = get_config("tiny", id2label={0: "road", 1: "car", 2: "person"})
    return IVGFForSemanticSegmentation(config).eval()


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    return IVGFForObjectDetection(get_config("tiny", id2label={0: "car", 1: "person"})).eval()


def label2id(model):
    return {label: index for index, label in model.config.id2label.items()}


def expected_label_map(model, visible, infrared):
    processor = IVGFImageProcessor()
    inputs = processor(images=visible, images_ir=infrared, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    return processor.post_process_semantic_segmentation(logits, target_sizes=[(HEIGHT, WIDTH)])[0].numpy()


def masks_to_label_map(result, label2id):
    label_map = np.full((HEIGHT, WIDTH), -1)
    for entry in result:
        mask = np.array(entry["mask"])
        assert entry["score"] is None and entry["mask"].mode == "L" and set(np.unique(mask)) <= {0, 255}
        assert (label_map[mask == 255] == -1).all()  # masks do not overlap
        label_map[mask == 255] = label2id[entry["label"]]
    return label_map


def test_segmentation_pipeline_in_process_every_input_form(segmenter, tmp_path):
    pipe = pipeline("rgbt-semantic-segmentation", model=segmenter, image_processor=IVGFImageProcessor())
    visible, infrared = pair()
    expected = expected_label_map(segmenter, visible, infrared)
    Image.fromarray(visible).save(tmp_path / "visible.png")
    Image.fromarray(infrared).save(tmp_path / "infrared.png")
    Image.fromarray(np.dstack([visible, infrared])).save(tmp_path / "rgbt.png")  # RGBA: visible + infrared
    forms = [
        {"visible": visible, "infrared": infrared},
        {"visible": Image.fromarray(visible), "infrared": Image.fromarray(infrared)},
        {"visible": str(tmp_path / "visible.png"), "infrared": tmp_path / "infrared.png"},
        np.dstack([visible, infrared]),
        str(tmp_path / "rgbt.png"),
    ]
    for form in forms:
        result = pipe(form)
        assert np.array_equal(masks_to_label_map(result, label2id(segmenter)), expected)
    assert [entry["label"] for entry in result] == [segmenter.config.id2label[int(c)] for c in np.unique(expected)]


def test_segmentation_pipeline_batches(segmenter):
    pipe = pipeline("rgbt-semantic-segmentation", model=segmenter, image_processor=IVGFImageProcessor())
    inputs = [dict(zip(("visible", "infrared"), pair(seed))) for seed in range(3)]
    single = [pipe(item) for item in inputs]
    for batch_size in (1, 2):
        batched = pipe(inputs, batch_size=batch_size)
        assert len(batched) == 3
        for one, other in zip(single, batched):
            assert [e["label"] for e in one] == [e["label"] for e in other]
            assert all(np.array_equal(np.array(a["mask"]), np.array(b["mask"])) for a, b in zip(one, other))


def test_segmentation_pipeline_rejects_bad_inputs(segmenter):
    pipe = pipeline("rgbt-semantic-segmentation", model=segmenter, image_processor=IVGFImageProcessor())
    with pytest.raises(ValueError, match="'visible' and/or 'infrared'"):
        pipe({"rgb": pair()[0]})
    with pytest.raises(ValueError, match="both are None"):
        pipe({"visible": None, "infrared": None})


def test_detection_pipeline_matches_the_model(detector):
    pipe = pipeline("rgbt-object-detection", model=detector, image_processor=IVGFImageProcessor())
    visible, infrared = pair()
    processor = IVGFImageProcessor()
    with torch.no_grad():
        outputs = detector(**processor(images=visible, images_ir=infrared, return_tensors="pt"))
    expected = processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=[(HEIGHT, WIDTH)])[0]
    result = pipe({"visible": visible, "infrared": infrared}, threshold=0.0)
    assert len(result) == len(expected["scores"]) > 0
    for entry, score, label, box in zip(result, expected["scores"], expected["labels"], expected["boxes"]):
        assert entry["score"] == pytest.approx(float(score))
        assert entry["label"] == detector.config.id2label[int(label)]
        assert entry["box"] == dict(zip(("xmin", "ymin", "xmax", "ymax"), (int(v) for v in box.tolist())))
    strict = pipe({"visible": visible, "infrared": infrared}, threshold=0.9)
    assert all(entry["score"] > 0.9 for entry in strict)
    batched = pipe([{"visible": visible, "infrared": infrared}] * 3, threshold=0.0, batch_size=2)
    assert [len(r) for r in batched] == [len(result)] * 3
    assert all(a["box"] == b["box"] for r in batched for a, b in zip(r, result))


CHILD = textwrap.dedent(
    """
    import json, sys
    sys.modules["ivgf_hf"] = None  # the package must not be importable: the pipeline comes from the folder
    import numpy as np
    from transformers import pipeline

    folder, task, inputs, result = sys.argv[1:5]
    pipe = pipeline(task, model=folder, trust_remote_code=True)
    assert type(pipe).__module__.startswith("transformers_modules"), type(pipe).__module__
    arrays = np.load(inputs)
    outputs = pipe([{"visible": arrays["visible"], "infrared": arrays["infrared"]}] * 2, batch_size=2)
    if task == "rgbt-semantic-segmentation":
        outputs = [[{"label": e["label"], "mask": np.array(e["mask"]).tolist()} for e in o] for o in outputs]
    json.dump(outputs, open(result, "w"))
    """
)


@pytest.mark.parametrize("python", INTERPRETERS)
@pytest.mark.slow
def test_saved_folder_pipeline_runs_without_ivgf_hf(segmenter, tmp_path, python):
    """Plain save_pretrained: the folder carries the pipeline class (config.custom_pipelines + pipeline_ivgf.py)."""
    folder = tmp_path / "ivgf-seg"
    segmenter.save_pretrained(folder)
    IVGFImageProcessor().save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["custom_pipelines"]["rgbt-semantic-segmentation"]["impl"] == (
        "pipeline_ivgf.IVGFSemanticSegmentationPipeline"
    )
    assert (folder / "pipeline_ivgf.py").is_file()
    visible, infrared = pair()
    np.savez(tmp_path / "inputs.npz", visible=visible, infrared=infrared)
    (tmp_path / "child.py").write_text(CHILD)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    completed = subprocess.run(
        [
            python,
            str(tmp_path / "child.py"),
            str(folder),
            "rgbt-semantic-segmentation",
            str(tmp_path / "inputs.npz"),
            str(tmp_path / "result.json"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    expected = expected_label_map(segmenter, visible, infrared)
    for result in json.loads((tmp_path / "result.json").read_text()):
        label_map = np.full((HEIGHT, WIDTH), -1)
        for entry in result:
            label_map[np.array(entry["mask"]) == 255] = label2id(segmenter)[entry["label"]]
        assert np.array_equal(label_map, expected)


def test_saved_detector_folder_carries_the_detection_pipeline(detector, tmp_path):
    detector.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert list(config["custom_pipelines"]) == ["rgbt-object-detection"]
    assert config["custom_pipelines"]["rgbt-object-detection"]["pt"] == ["AutoModelForObjectDetection"]
    assert (tmp_path / "pipeline_ivgf.py").is_file()
