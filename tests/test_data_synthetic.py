"""SynthRGBT: determinism, the real layouts on disk, class coverage, modality-specific visibility, impairments."""

import json
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from ivgf_hf.data import (
    IMPAIRMENTS,
    M3FD_CLASSES,
    MFNET_CLASSES,
    REALISTIC_RATES,
    TARDAL_M3FD_ORDER,
    generate_synthrgbt,
    synth_scene,
)
from ivgf_hf.data.synthetic_impairments import cross_over, shift

SEG = {name: index for index, name in enumerate(MFNET_CLASSES)}


def _mode_and_size(path):
    with Image.open(path) as image:
        return image.mode, image.size


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_scenes_are_deterministic_and_depend_on_seed_and_index():
    a, b = synth_scene(0, 5, 48, 64, night=True), synth_scene(0, 5, 48, 64, night=True)
    for key in ("visible", "infrared", "label"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert not np.array_equal(a.visible, synth_scene(1, 5, 48, 64, night=True).visible)
    assert not np.array_equal(a.visible, synth_scene(0, 6, 48, 64, night=True).visible)


def test_generation_is_byte_identical_for_the_same_arguments(tmp_path):
    kwargs = dict(layout="mfnet", num_train=3, num_test=2, height=40, width=56, seed=3)
    first = _files(generate_synthrgbt(tmp_path / "a", **kwargs))
    second = _files(generate_synthrgbt(tmp_path / "b", **kwargs))
    assert first == second
    assert first != _files(generate_synthrgbt(tmp_path / "c", **{**kwargs, "seed": 4}))


def test_mfnet_layout_has_rgbt_pngs_labels_and_day_night_lists(tmp_path):
    root = generate_synthrgbt(
        tmp_path / "mf", "mfnet", num_train=6, num_test=5, num_val=2, height=40, width=56, night_fraction=0.4
    )
    train = (root / "train.txt").read_text().split()
    test = (root / "test.txt").read_text().split()
    assert len(train) == 6 and len((root / "val.txt").read_text().split()) == 2 and len(test) == 5
    assert sum(name.endswith("N") for name in train) == round(6 * 0.4)
    day, night = (root / "test_day.txt").read_text().split(), (root / "test_night.txt").read_text().split()
    assert sorted(day + night) == sorted(test)
    assert all(n.endswith("D") for n in day) and all(n.endswith("N") for n in night)
    assert _mode_and_size(root / "images" / f"{train[0]}.png") == ("RGBA", (56, 40))
    label = np.asarray(Image.open(root / "labels" / f"{train[0]}.png"))
    assert label.ndim == 2 and label.max() < len(MFNET_CLASSES)


def test_msrs_and_cmx_layouts(tmp_path):
    msrs = generate_synthrgbt(tmp_path / "msrs", "msrs", num_train=2, num_test=1, height=32, width=48)
    for split, count in (("train", 2), ("test", 1)):
        for folder, mode in (("vi", "RGB"), ("ir", "L"), ("Segmentation_labels", "L")):
            files = sorted((msrs / split / folder).glob("*.png"))
            assert len(files) == count and _mode_and_size(files[0])[0] == mode
    cmx = generate_synthrgbt(tmp_path / "cmx", "mfnet", num_train=2, num_test=1, height=32, width=48, variant="cmx")
    assert {p.name for p in cmx.iterdir()} == {"RGB", "Modal", "Label", "train.txt", "test.txt"}


def test_m3fd_layouts_write_voc_and_tardal_yolo_with_the_same_boxes(tmp_path):
    kwargs = dict(num_train=3, num_test=1, height=60, width=80, seed=2)
    voc = generate_synthrgbt(tmp_path / "voc", "m3fd", **kwargs)
    yolo = generate_synthrgbt(tmp_path / "yolo", "m3fd", variant="yolo", **kwargs)
    assert _mode_and_size(voc / "Ir" / "00000.png")[0] == "RGB"  # 24-bit grey, as M3FD ships it
    assert (voc / "meta" / "test.txt").read_text().split() == ["00003"]
    assert (yolo / "meta" / "val.txt").read_text().split() == ["00003"]
    scene = synth_scene(2, 0, 60, 80, task="detection")  # boxes do not depend on the lighting
    objects = ET.parse(voc / "Annotation" / "00000.xml").getroot().findall("object")
    voc_boxes = [[float(o.find("bndbox").findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")] for o in objects]
    np.testing.assert_allclose(voc_boxes, scene.boxes.reshape(-1, 4))
    assert [o.findtext("name") for o in objects] == [M3FD_CLASSES[c] for c in scene.box_classes]
    rows = np.loadtxt(yolo / "labels" / "00000.txt", ndmin=2).reshape(-1, 5)
    assert [TARDAL_M3FD_ORDER[int(c)] for c in rows[:, 0]] == [M3FD_CLASSES[c] for c in scene.box_classes]
    cx = (scene.boxes[:, 0] + scene.boxes[:, 2]) / 2 / 80
    np.testing.assert_allclose(rows[:, 1], cx, atol=1e-5)


def test_all_classes_appear_and_boxes_are_tight_inside_the_image():
    seen = set()
    for index in range(24):
        seen |= set(np.unique(synth_scene(7, index, 96, 128, night=index % 2 == 1).label).tolist())
    assert seen == set(range(len(MFNET_CLASSES)))
    counts = np.zeros(len(M3FD_CLASSES), int)
    for index in range(24):
        scene = synth_scene(7, index, 96, 128, night=False, task="detection")
        np.add.at(counts, scene.box_classes, 1)
        boxes = scene.boxes
        assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 128).all() and (boxes[:, 3] <= 96).all()
    assert (counts > 0).all()


def _contrast(image, label, class_id, margin=4):
    """|mean inside class - mean of unlabeled pixels around it| (0-1 scale), or None when the class is absent."""
    mask = label == class_id
    if mask.sum() < 12:
        return None
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    window = (
        slice(max(rows[0] - margin, 0), rows[-1] + margin + 1),
        slice(max(cols[0] - margin, 0), cols[-1] + margin + 1),
    )
    context = label[window] == SEG["unlabeled"]
    if context.sum() < 12:
        return None
    values = image[window].astype(np.float32) / 255.0
    return abs(values[mask[window]].mean() - values[context].mean())


def test_fusion_matters_people_vanish_in_night_visible_cones_in_infrared():
    stats = {key: [] for key in ("person_vis", "person_ir", "cone_vis", "cone_ir")}
    for index in range(16):
        scene = synth_scene(11, index, 120, 160, night=True)
        grey = scene.visible.astype(np.float32) @ np.float32([0.299, 0.587, 0.114])
        for name, class_id in (("person", SEG["person"]), ("cone", SEG["color_cone"])):
            for modality, image in (("vis", grey), ("ir", scene.infrared)):
                value = _contrast(image, scene.label, class_id)
                if value is not None:
                    stats[f"{name}_{modality}"].append(value)
    median = {key: float(np.median(values)) for key, values in stats.items()}
    assert min(len(v) for v in stats.values()) >= 4
    assert median["person_ir"] > 0.2 and median["person_vis"] < 0.05
    assert median["cone_vis"] > 0.1 and median["cone_ir"] < 0.03


def test_guardrails_are_cold_in_infrared():
    colder = []
    for index in range(16):
        scene = synth_scene(5, index, 120, 160, night=False)
        rail = scene.label == SEG["guardrail"]
        if rail.sum() > 20:
            colder.append(scene.infrared[rail].mean() < scene.infrared[scene.label == 0].mean())
    assert colder and all(colder)


def test_misregistration_shifts_only_the_infrared_image():
    aligned = synth_scene(4, 2, 64, 80, night=False)
    shifted = synth_scene(4, 2, 64, 80, night=False, misregistration_px=3)
    np.testing.assert_array_equal(aligned.visible, shifted.visible)
    np.testing.assert_array_equal(aligned.label, shifted.label)
    inner = (slice(3, -3), slice(3, -3))
    matches = [
        (dy, dx)
        for dy in range(-3, 4)
        for dx in range(-3, 4)
        if np.array_equal(np.roll(aligned.infrared, (dy, dx), axis=(0, 1))[inner], shifted.infrared[inner])
    ]
    assert len(matches) == 1


def test_generation_is_fast_and_refuses_to_overwrite(tmp_path):
    start = time.perf_counter()
    generate_synthrgbt(tmp_path / "fast", "msrs", num_train=8, num_test=0, height=240, width=320)
    assert (time.perf_counter() - start) / 8 < 1.0  # about 0.06 s per pair measured; per-pixel loops take minutes
    with pytest.raises(FileExistsError, match="overwrite=True"):
        generate_synthrgbt(tmp_path / "fast", "msrs", num_train=1, num_test=0)
    generate_synthrgbt(tmp_path / "fast", "msrs", num_train=1, num_test=0, height=32, width=32, overwrite=True)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(layout="kitti"), "layout"),
        (dict(layout="mfnet", variant="voc"), "variants"),
        (dict(layout="msrs", num_val=2), "num_val"),
        (dict(layout="mfnet", night_fraction=1.5), "night_fraction"),
    ],
)
def test_bad_arguments_are_rejected(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_synthrgbt(tmp_path / "x", **kwargs)


# --- impairments -------------------------------------------------------------------------------------------------


def _pair(index, night=False, task="segmentation", impairments="realistic", seed=21, size=(48, 64)):
    """The same scene without and with ``impairments``."""
    plain = synth_scene(seed, index, *size, night=night, task=task)
    return plain, synth_scene(seed, index, *size, night=night, task=task, impairments=impairments)


def test_impairments_never_change_the_base_scene():
    for index in range(6):
        for task in ("segmentation", "detection"):
            plain = synth_scene(21, index, 48, 64, night=index % 2 == 1, task=task)
            none = synth_scene(21, index, 48, 64, night=index % 2 == 1, task=task, impairments="none")
            for key in ("visible", "infrared", "label", "boxes", "box_classes"):
                np.testing.assert_array_equal(getattr(plain, key), getattr(none, key))
            assert none.impairments == {}
            _, impaired = _pair(index, index % 2 == 1, task, {"misregistration": 1.0, "crossover": 1.0})
            np.testing.assert_array_equal(plain.visible, impaired.visible)  # infrared-only impairments
            np.testing.assert_array_equal(plain.label, impaired.label)
            np.testing.assert_array_equal(plain.boxes, impaired.boxes)


def test_glare_saturates_the_visible_image_by_day_and_night():
    for index in range(8):
        plain, glared = _pair(index, night=index % 2 == 1, impairments={"glare": 1.0})
        np.testing.assert_array_equal(plain.infrared, glared.infrared)
        blobs = glared.impairments["glare"]["blobs"]
        centres = [(int(y), int(x)) for y, x, _ in blobs if 0 <= y < 48 and 0 <= x < 64]
        assert centres and all((glared.visible[y, x] == 255).all() for y, x in centres)
        white = (glared.visible >= 250).all(-1).mean() - (plain.visible >= 250).all(-1).mean()
        assert white > 0.01  # at least 1 % more of the image clipped to white


def test_crossover_hides_hot_objects_in_the_infrared_by_day_only():
    plain_contrast, crossed_contrast = [], []
    for index in range(12):
        plain, crossed = _pair(index, impairments={"crossover": 1.0}, size=(96, 128))
        np.testing.assert_array_equal(plain.visible, crossed.visible)
        before = _contrast(plain.infrared, plain.label, SEG["person"])
        after = _contrast(crossed.infrared, crossed.label, SEG["person"])
        if "crossover" in crossed.impairments and before is not None:
            plain_contrast.append(before)
            crossed_contrast.append(after)
        assert "crossover" not in _pair(index, night=True, impairments={"crossover": 1.0})[1].impairments
    assert len(plain_contrast) >= 4
    assert np.median(plain_contrast) > 0.2 and np.median(crossed_contrast) < 0.06


def test_cross_over_sets_objects_to_the_background_temperature():
    rng = np.random.default_rng(0)
    background = rng.uniform(0.3, 0.5, (20, 30)).astype(np.float32)
    objects = np.zeros((20, 30), np.int32)
    objects[2:8, 2:8], objects[10:18, 5:12], objects[3:9, 20:28] = 1, 2, 3
    temperature = np.where(objects > 0, np.float32(0.9), background)
    crossed = cross_over(np.random.default_rng(1), temperature, background, objects)
    changed = [i for i in (1, 2, 3) if temperature[objects == i].max() < 0.9]
    assert crossed == len(changed) >= 1
    for i in (1, 2, 3):
        expected = background[objects == i] if i in changed else 0.9
        np.testing.assert_allclose(temperature[objects == i], expected, atol=0.02)
    np.testing.assert_array_equal(temperature[objects == 0], background[objects == 0])


def test_dropout_degrades_one_whole_modality():
    kinds = set()
    for index in range(16):
        plain, dropped = _pair(index, night=index % 2 == 1, impairments={"dropout": 1.0})
        record = dropped.impairments["dropout"]
        kinds.add((record["modality"], record["kind"]))
        other = "infrared" if record["modality"] == "visible" else "visible"
        np.testing.assert_array_equal(getattr(plain, other), getattr(dropped, other))
        image, reference = getattr(dropped, record["modality"]).astype(float), getattr(plain, record["modality"])
        if record["kind"] == "dark":
            assert image.mean() < 20
        elif record["kind"] == "flat":
            assert image.std() < 6
        else:
            assert (image - reference).std() > 35
    assert kinds == {("visible", "dark"), ("visible", "noise"), ("infrared", "noise"), ("infrared", "flat")}


def test_misregistration_shifts_the_infrared_image_by_the_recorded_offset():
    offsets = set()
    for index in range(8):
        plain, shifted = _pair(index, task="detection", impairments={"misregistration": 1.0})
        dy, dx = shifted.impairments["misregistration"]["dy"], shifted.impairments["misregistration"]["dx"]
        assert 0 < max(abs(dy), abs(dx)) <= 4
        np.testing.assert_array_equal(shift(plain.infrared, dy, dx), shifted.infrared)
        offsets.add((dy, dx))
    assert len(offsets) > 1


def test_realistic_rates_day_night_split_and_metadata_file(tmp_path):
    root = generate_synthrgbt(
        tmp_path / "r", "mfnet", num_train=30, num_test=10, height=32, width=48, seed=5, impairments="realistic"
    )
    meta = json.loads((root / "impairments.json").read_text())
    assert meta["rates"] == REALISTIC_RATES
    names = (root / "train.txt").read_text().split() + (root / "test.txt").read_text().split()
    assert sorted(meta["images"]) == sorted(names)
    counts = dict.fromkeys(IMPAIRMENTS, 0)
    for name, entry in meta["images"].items():
        assert entry["night"] == name.endswith("N") and set(entry["impairments"]) <= set(IMPAIRMENTS)
        assert not (entry["night"] and "crossover" in entry["impairments"])
        for key in entry["impairments"]:
            counts[key] += 1
    for split, size in (("train", 30), ("test", 10)):
        entries = [e for e in meta["images"].values() if e["split"] == split]
        assert len(entries) == size and sum(e["night"] for e in entries) == size // 2
        assert any(e["impairments"] for e in entries)
    expected = {name: 40 * rate * (0.5 if name == "crossover" else 1) for name, rate in REALISTIC_RATES.items()}
    for name, count in counts.items():
        assert abs(count - expected[name]) <= 3 * np.sqrt(expected[name]) + 1, (name, count)
    assert not (
        generate_synthrgbt(tmp_path / "n", "msrs", num_train=1, num_test=1, height=32, width=32) / "impairments.json"
    ).exists()


def test_custom_rates_and_detection_layout_with_impairments(tmp_path):
    kwargs = dict(num_train=6, num_test=2, height=48, width=64, seed=2, impairments={"dropout": 0.5})
    first = _files(generate_synthrgbt(tmp_path / "a", "m3fd", **kwargs))
    assert first == _files(generate_synthrgbt(tmp_path / "b", "m3fd", **kwargs))
    meta = json.loads(first["impairments.json"])
    assert meta["rates"] == {"glare": 0.0, "crossover": 0.0, "dropout": 0.5, "misregistration": 0.0}
    applied = [set(entry["impairments"]) for entry in meta["images"].values()]
    assert {"dropout"} in applied and set() in applied and all(a <= {"dropout"} for a in applied)
    plain = _files(generate_synthrgbt(tmp_path / "c", "m3fd", **{**kwargs, "impairments": "none"}))
    assert {k: v for k, v in first.items() if k.startswith("Annotation")} == {
        k: v for k, v in plain.items() if k.startswith("Annotation")
    }


@pytest.mark.parametrize(
    "impairments, message",
    [
        ("heavy", "'heavy'"),
        ({"fog": 0.2}, "'fog'"),
        ({"glare": 1.5}, "'glare'.*1.5"),
        ({"dropout": "often"}, "'dropout'.*'often'"),
        (["glare"], "dict of rates"),
    ],
)
def test_bad_impairments_are_rejected(tmp_path, impairments, message):
    with pytest.raises(ValueError, match=message):
        generate_synthrgbt(tmp_path / "x", "mfnet", impairments=impairments)
    with pytest.raises(ValueError, match=message):
        synth_scene(0, 0, 32, 32, impairments=impairments)
    assert not (tmp_path / "x").exists()
