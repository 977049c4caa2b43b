"""Loaders on SynthRGBT in every layout, validation of broken copies, and save / parquet round trips."""

import logging
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from datasets import ClassLabel, load_dataset, load_from_disk
from PIL import Image

from ivgf_hf.data import (
    M3FD_CLASSES,
    MFNET_CLASSES,
    RGBTLayoutError,
    RGBTSampleError,
    generate_synthrgbt,
    load_m3fd,
    load_mfnet,
    load_msrs,
    load_paired_folder,
    save_parquet,
)

H, W = 40, 56


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    base = tmp_path_factory.mktemp("synthrgbt")
    small = dict(height=H, width=W, seed=1)
    return {
        "rtfnet": generate_synthrgbt(base / "rtfnet", "mfnet", num_train=4, num_test=4, num_val=2, **small),
        "cmx": generate_synthrgbt(base / "cmx", "mfnet", num_train=3, num_test=2, variant="cmx", **small),
        "msrs": generate_synthrgbt(base / "msrs", "msrs", num_train=4, num_test=2, **small),
        "voc": generate_synthrgbt(base / "voc", "m3fd", num_train=16, num_test=4, height=60, width=80, seed=1),
        "yolo": generate_synthrgbt(
            base / "yolo", "m3fd", num_train=16, num_test=4, height=60, width=80, seed=1, variant="yolo"
        ),
    }


def _copy(worlds, key, tmp_path):
    return shutil.copytree(worlds[key], tmp_path / key)


def _snapshot(root):
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def _array(image):
    return np.asarray(image)


def test_mfnet_rtfnet_splits_packed_files_into_both_columns(worlds):
    root = worlds["rtfnet"]
    before = _snapshot(root)
    ds = load_mfnet(root)
    assert set(ds) == {"train", "val", "test", "test_day", "test_night"}
    assert [len(ds[s]) for s in ("train", "val", "test")] == [4, 2, 4]
    assert set(list(ds["test_day"]["condition"])) == {"day"} and set(list(ds["test_night"]["condition"])) == {"night"}
    features = ds["train"].features
    assert features["visible"].mode == "RGB" and features["infrared"].mode == "L" and features["label"].mode == "L"
    row = ds["train"][1]
    packed = np.asarray(Image.open(root / "images" / f"{row['name']}.png"))
    np.testing.assert_array_equal(_array(row["visible"]), packed[..., :3])
    np.testing.assert_array_equal(_array(row["infrared"]), packed[..., 3])
    np.testing.assert_array_equal(_array(row["label"]), np.asarray(Image.open(root / "labels" / f"{row['name']}.png")))
    assert ds.class_names == MFNET_CLASSES and ds.skipped == ()
    assert _snapshot(root) == before  # nothing written inside the data folder


def test_mfnet_cmx_layout_and_split_selection(worlds):
    ds = load_mfnet(worlds["cmx"], splits=["test"])
    assert list(ds) == ["test"] and len(ds["test"]) == 2
    row = ds["test"][0]
    modal = np.asarray(Image.open(worlds["cmx"] / "Modal" / f"{row['name']}.png"))
    np.testing.assert_array_equal(_array(row["infrared"]), modal)
    assert row["condition"] in ("day", "night")
    with pytest.raises(RGBTLayoutError, match="val.txt"):
        load_mfnet(worlds["cmx"], splits=["val"])


def test_msrs_layout(worlds):
    ds = load_msrs(worlds["msrs"], check="header")
    assert {s: len(d) for s, d in ds.items()} == {"train": 4, "test": 2}
    row = ds["train"][0]
    source = worlds["msrs"] / "train" / "vi" / f"{row['name']}.png"
    np.testing.assert_array_equal(_array(row["visible"]), np.asarray(Image.open(source)))
    assert row["infrared"].mode == "L" and row["label"].size == (W, H)


def test_m3fd_seeded_split_is_deterministic_written_outside_and_boxes_match(worlds, tmp_path):
    root = worlds["voc"]
    before = _snapshot(root)
    ds = load_m3fd(root, seed=3, split_out=tmp_path / "splits")
    assert {s: len(d) for s, d in ds.items()} == {"train": 18, "test": 2}
    written = (tmp_path / "splits" / "m3fd_seed3_test.txt").read_text().split()
    assert written == list(ds["test"]["name"]) and ds.split_files["test"].endswith("m3fd_seed3_test.txt")
    again = load_m3fd(root, seed=3, split_out=tmp_path / "splits")
    assert list(again["test"]["name"]) == written
    other = load_m3fd(root, seed=4, split_out=tmp_path / "splits")
    assert sorted(list(other["train"]["name"]) + list(other["test"]["name"])) == sorted(
        list(ds["train"]["name"]) + list(ds["test"]["name"])
    )
    assert list(other["test"]["name"]) != written
    category = ds["train"].features["objects"]["category"].feature
    assert isinstance(category, ClassLabel) and tuple(category.names) == M3FD_CLASSES
    row = next(r for r in ds["train"] if r["objects"]["bbox"])
    objects = ET.parse(root / "Annotation" / f"{row['name']}.xml").getroot().findall("object")
    assert [M3FD_CLASSES[c] for c in row["objects"]["category"]] == [o.findtext("name") for o in objects]
    xmin = [float(o.find("bndbox").findtext("xmin")) for o in objects]
    np.testing.assert_allclose(np.asarray(row["objects"]["bbox"])[:, 0], xmin)
    assert row["infrared"].mode == "L" and row["condition"] == "unknown"
    assert _snapshot(root) == before


def test_m3fd_split_lists_are_never_written_inside_the_data_folder_nor_overwritten(worlds, tmp_path):
    with pytest.raises(ValueError, match="inside the data folder"):
        load_m3fd(worlds["voc"], split_out=worlds["voc"] / "splits")
    (tmp_path / "m3fd_seed0_train.txt").write_text("someone else's list\n")
    with pytest.raises(FileExistsError, match="different split"):
        load_m3fd(worlds["voc"], split_out=tmp_path)


def test_m3fd_tardal_yolo_maps_class_ids_by_name(worlds):
    root = worlds["yolo"]
    ds = load_m3fd(root, split_files={"train": root / "meta" / "train.txt", "test": root / "meta" / "val.txt"})
    assert len(ds["train"]) == 16 and list(ds["test"]["name"]) == ["00016", "00017", "00018", "00019"]
    voc = load_m3fd(worlds["voc"], split_files={"train": worlds["voc"] / "meta" / "train.txt"})["train"]
    for a, b in zip(list(ds["train"]["objects"]), list(voc["objects"])):
        assert a["category"] == b["category"]  # TarDAL's id order mapped onto the canonical one
        np.testing.assert_allclose(a["bbox"], b["bbox"], atol=1e-3)


def test_paired_folders_for_segmentation_and_detection(worlds):
    msrs = worlds["msrs"] / "train"
    seg = load_paired_folder(msrs / "vi", msrs / "ir", labels_dir=msrs / "Segmentation_labels", split="train")
    assert len(seg["train"]) == 4 and "label" in seg["train"].column_names
    voc = worlds["voc"]
    det = load_paired_folder(voc / "Vis", voc / "Ir", annotations_dir=voc / "Annotation", class_names=M3FD_CLASSES)
    assert len(det["train"]) == 20 and det.class_names == M3FD_CLASSES
    plain = load_paired_folder(msrs / "vi", msrs / "ir")
    assert plain["train"].column_names == ["visible", "infrared", "name", "condition"]
    with pytest.raises(ValueError, match="class_names"):
        load_paired_folder(worlds["yolo"] / "vi", worlds["yolo"] / "ir", annotations_dir=worlds["yolo"] / "labels")


@pytest.mark.parametrize("loader", [load_mfnet, load_msrs, load_m3fd])
def test_unknown_layout_error_shows_the_expected_layout(tmp_path, loader):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(RGBTLayoutError, match="expected"):
        loader(tmp_path)
    with pytest.raises(ValueError, match="errors"):
        loader(tmp_path, errors="ignore")


def _break_and_check(root, load, broken_file, reason, count_key, expected_left, caplog):
    with pytest.raises(RGBTSampleError) as info:
        load(root)
    assert broken_file.name in str(info.value) and reason in str(info.value)
    with caplog.at_level(logging.WARNING):
        ds = load(root, errors="skip")
    assert len(ds[count_key]) == expected_left
    assert any(broken_file.name in p.file and reason in p.reason for p in ds.skipped)
    assert "skipped" in caplog.text


def test_missing_infrared_partner(worlds, tmp_path, caplog):
    root = _copy(worlds, "msrs", tmp_path)
    victim = sorted((root / "train" / "ir").glob("*.png"))[0]
    victim.unlink()
    visible = root / "train" / "vi" / victim.name
    _break_and_check(root, load_msrs, visible, "no infrared partner", "train", 3, caplog)


def test_missing_visible_partner(worlds, tmp_path, caplog):
    root = _copy(worlds, "voc", tmp_path)
    victim = root / "Vis" / "00002.png"
    victim.unlink()
    load = lambda r, **kw: load_m3fd(r, split_files={"all": r / "meta" / "train.txt"}, **kw)  # noqa: E731
    _break_and_check(root, load, root / "Ir" / "00002.png", "no visible partner", "all", 15, caplog)


@pytest.mark.parametrize("check", ["full", "header"])
def test_corrupt_file(worlds, tmp_path, caplog, check):
    root = _copy(worlds, "msrs", tmp_path)
    victim = sorted((root / "test" / "vi").glob("*.png"))[1]
    victim.write_bytes(victim.read_bytes()[:200])  # truncated PNG
    load = lambda r, **kw: load_msrs(r, check=check, **kw)  # noqa: E731
    _break_and_check(root, load, victim, "corrupt", "test", 1, caplog)


def test_mismatched_sizes(worlds, tmp_path, caplog):
    root = _copy(worlds, "cmx", tmp_path)
    victim = sorted((root / "Modal").glob("*.png"))[0]
    Image.new("L", (W + 8, H)).save(victim)
    split = "train" if victim.stem in (root / "train.txt").read_text().split() else "test"
    left = {"train": 2, "test": 1}[split]
    _break_and_check(root, load_mfnet, victim, "size mismatch", split, left, caplog)


def test_label_ids_out_of_range_but_ignore_allowed(worlds, tmp_path, caplog):
    root = _copy(worlds, "rtfnet", tmp_path)
    names = (root / "train.txt").read_text().split()
    ignore = np.asarray(Image.open(root / "labels" / f"{names[0]}.png")).copy()
    ignore[:5] = 255
    Image.fromarray(ignore).save(root / "labels" / f"{names[0]}.png")
    bad = root / "labels" / f"{names[1]}.png"
    label = np.asarray(Image.open(bad)).copy()
    label[0, 0] = len(MFNET_CLASSES)
    Image.fromarray(label).save(bad)
    load = lambda r, **kw: load_mfnet(r, splits=["train"], **kw)  # noqa: E731
    _break_and_check(root, load, bad, "label ids [9]", "train", 3, caplog)


def test_packed_mfnet_file_needs_four_channels(worlds, tmp_path):
    root = _copy(worlds, "rtfnet", tmp_path)
    name = (root / "val.txt").read_text().split()[0]
    Image.new("RGB", (W, H)).save(root / "images" / f"{name}.png")
    with pytest.raises(RGBTSampleError, match="4-channel"):
        load_mfnet(root, splits=["val"])


def test_split_list_with_a_line_that_is_not_utf8(worlds, tmp_path, caplog):
    root = _copy(worlds, "rtfnet", tmp_path)
    split_file = root / "val.txt"
    split_file.write_bytes(split_file.read_bytes() + b"caf\xe9\n")  # Latin-1, not UTF-8
    with pytest.raises(RGBTSampleError, match=r"val.txt: line 3 is not UTF-8 text \(unexpected end of data at byte 3"):
        load_mfnet(root, splits=["val"])
    with caplog.at_level(logging.WARNING):
        ds = load_mfnet(root, splits=["val"], errors="skip")
    assert len(ds["val"]) == 2 and [p.file for p in ds.skipped] == [str(split_file)]
    assert "line 3 is not UTF-8" in caplog.text


def test_empty_split_lists_warn(worlds, tmp_path, caplog):
    root = _copy(worlds, "rtfnet", tmp_path)
    (root / "val.txt").write_text("")
    with caplog.at_level(logging.WARNING):
        ds = load_mfnet(root, splits=["train", "val"])
    assert len(ds["val"]) == 0 and len(ds["train"]) == 4
    assert f"split 'val' is empty: no usable sample from {root / 'val.txt'}" in caplog.text
    assert "split 'train'" not in caplog.text


def test_images_below_the_minimum_size_are_named(worlds, tmp_path, caplog):
    root = _copy(worlds, "msrs", tmp_path)
    victim = sorted((root / "train" / "vi").glob("*.png"))[0]
    Image.new("RGB", (1, 1)).save(victim)
    Image.new("L", (1, 1)).save(root / "train" / "ir" / victim.name)
    Image.new("L", (1, 1)).save(root / "train" / "Segmentation_labels" / victim.name)
    _break_and_check(root, load_msrs, victim, "image is 1x1 px; IVGF needs at least 16 px per side", "train", 3, caplog)


def test_split_list_naming_a_missing_image(worlds, tmp_path):
    root = _copy(worlds, "rtfnet", tmp_path)
    (root / "val.txt").write_text((root / "val.txt").read_text() + "99999N\n")
    with pytest.raises(RGBTSampleError, match="val.txt: lists '99999N'"):
        load_mfnet(root)
    assert len(load_mfnet(root, errors="skip")["val"]) == 2


@pytest.mark.parametrize(
    "edit, reason",
    [({"xmax": "200"}, "outside the 80x60 image"), ({"xmin": "30", "xmax": "30"}, "zero-size box")],
)
def test_bad_boxes(worlds, tmp_path, caplog, edit, reason):
    root = _copy(worlds, "voc", tmp_path)
    victim = next(p for p in sorted((root / "Annotation").glob("*.xml")) if "<object>" in p.read_text())
    tree = ET.parse(victim)
    box = tree.getroot().find("object").find("bndbox")
    for key, value in edit.items():
        box.find(key).text = value
    tree.write(victim)
    names = [p.stem for p in sorted((root / "Vis").glob("*.png"))]
    (tmp_path / "all.txt").write_text("\n".join(names))
    load = lambda r, **kw: load_m3fd(r, split_files={"all": tmp_path / "all.txt"}, **kw)  # noqa: E731
    _break_and_check(root, load, victim, reason, "all", 19, caplog)


def test_boxes_within_one_pixel_are_clipped(worlds, tmp_path):
    root = _copy(worlds, "voc", tmp_path)
    victim = next(p for p in sorted((root / "Annotation").glob("*.xml")) if "<object>" in p.read_text())
    tree = ET.parse(victim)
    tree.getroot().find("object").find("bndbox").find("xmax").text = "80.5"
    tree.write(victim)
    (tmp_path / "one.txt").write_text(victim.stem)
    row = load_m3fd(root, split_files={"one": tmp_path / "one.txt"})["one"][0]
    assert row["objects"]["bbox"][0][2] == 80.0


def test_save_to_disk_and_parquet_round_trips_survive_deleting_the_source(worlds, tmp_path):
    source = _copy(worlds, "msrs", tmp_path)
    ds = load_msrs(source)
    det_source = _copy(worlds, "voc", tmp_path)
    det = load_m3fd(det_source, split_files={"train": det_source / "meta" / "train.txt"})
    expected = [(_array(r["visible"]), _array(r["infrared"]), _array(r["label"])) for r in ds["test"]]
    ds.save_to_disk(tmp_path / "saved")
    paths = save_parquet(ds, tmp_path / "parquet")
    det_paths = save_parquet(det, tmp_path / "parquet_det")
    with pytest.raises(FileExistsError):
        save_parquet(ds, tmp_path / "parquet")
    expected_objects = list(det["train"]["objects"])
    shutil.rmtree(source)
    shutil.rmtree(det_source)
    restored = {
        "disk": load_from_disk(str(tmp_path / "saved"))["test"],
        "parquet": load_dataset("parquet", data_files=paths)["test"],
    }
    for dataset in restored.values():
        assert dataset.features["infrared"].mode == "L"
        for row, (visible, infrared, label) in zip(dataset, expected):
            np.testing.assert_array_equal(_array(row["visible"]), visible)
            np.testing.assert_array_equal(_array(row["infrared"]), infrared)
            np.testing.assert_array_equal(_array(row["label"]), label)
    det_back = load_dataset("parquet", data_files=det_paths)["train"]
    assert tuple(det_back.features["objects"]["category"].feature.names) == M3FD_CLASSES
    assert list(det_back["objects"]) == expected_objects


def test_palette_labels_keep_ids_and_16_bit_infrared_or_duplicate_names_are_rejected(worlds, tmp_path):
    root = _copy(worlds, "msrs", tmp_path)
    label_path = sorted((root / "test" / "Segmentation_labels").glob("*.png"))[0]
    ids = np.asarray(Image.open(label_path))
    palette = Image.frombytes("P", (ids.shape[1], ids.shape[0]), np.ascontiguousarray(ids).tobytes())
    palette.putpalette([v for colour in [(255, 255, 255)] * 256 for v in colour])  # colours unrelated to ids
    palette.save(label_path)
    row = next(r for r in load_msrs(root)["test"] if r["name"] == label_path.stem)
    np.testing.assert_array_equal(_array(row["label"]), ids)
    infrared = sorted((root / "train" / "ir").glob("*.png"))[0]
    Image.fromarray(np.asarray(Image.open(infrared)).astype(np.uint16) * 256).save(infrared)
    with pytest.raises(RGBTSampleError, match="unsupported mode I;16"):
        load_msrs(root)
    infrared.unlink()
    visible = sorted((root / "train" / "vi").glob("*.png"))[1]
    shutil.copy(visible, visible.with_suffix(".jpg"))
    ds = load_msrs(root, errors="skip")
    reasons = " ".join(p.reason for p in ds.skipped)
    assert "several files named" in reasons and "no infrared partner" in reasons and len(ds.skipped) == 2
    assert len(ds["train"]) == 2


def test_m3fd_seeded_split_writes_nothing_unless_asked(worlds, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ds = load_m3fd(worlds["voc"], seed=5)
    assert len(ds["train"]) + len(ds["test"]) > 0
    assert list(tmp_path.iterdir()) == [] and ds.split_files == {}


def test_the_published_m3fd_split_is_the_loaders_seeded_split():
    """ivgf_hf/data/splits holds the default seeded split of M3FD's 4,200 names (00000 ... 04199)."""
    from importlib.resources import files

    from ivgf_hf.data.loaders import _m3fd_split

    expected = _m3fd_split([f"{i:05d}" for i in range(4200)], seed=0, test_fraction=0.1)
    folder = files("ivgf_hf.data") / "splits"
    for split in ("train", "test"):
        assert (folder / f"m3fd_seed0_{split}.txt").read_text().split() == expected[split]
    assert len(expected["test"]) == 420
