"""SynthRGBT: a small, seeded RGB-T street world written to disk in the MFNet, MSRS and M3FD layouts.

The scenes come from :func:`ivgf_hf.data.synthetic_scene.render_scene` (see its module docstring for what each
modality shows). The files are written exactly as the real data sets lay them out, so the real loaders
(:mod:`ivgf_hf.data.loaders`) are what reads them:

* ``layout="mfnet"``, ``variant="rtfnet"`` (default): ``images/<name>.png`` (4 channels, RGB + T),
  ``labels/<name>.png`` and ``train.txt`` / ``val.txt`` (if ``num_val``) / ``test.txt`` / ``test_day.txt`` /
  ``test_night.txt``; names carry MFNet's day/night suffix (``00012D``, ``00013N``).
* ``layout="mfnet"``, ``variant="cmx"``: ``RGB/``, ``Modal/``, ``Label/`` and ``train.txt`` / ``test.txt``.
* ``layout="msrs"``: ``{train,test}/{vi,ir,Segmentation_labels}/<name>.png``.
* ``layout="m3fd"``, ``variant="voc"`` (default): ``Vis/``, ``Ir/`` (24-bit grey, as the real files),
  ``Annotation/<name>.xml`` (Pascal VOC with M3FD class names) and ``meta/train.txt`` / ``meta/test.txt``.
* ``layout="m3fd"``, ``variant="yolo"``: TarDAL's ``vi/``, ``ir/``, ``labels/<name>.txt`` (``cls cx cy w h``
  normalised, TarDAL's class order) and ``meta/train.txt`` / ``meta/val.txt``.
* both M3FD variants also list the names of each lighting in ``meta/day.txt`` / ``meta/night.txt`` (M3FD's names
  carry no day/night suffix); :func:`load_synthrgbt_detection` reads them into the ``condition`` column.

Every scene is drawn from its own generator seeded by ``(seed, index)``, so a scene does not depend on how many
others are generated. ``impairments`` (:mod:`ivgf_hf.data.synthetic_impairments`) are drawn from a second
generator seeded by ``(seed, index, 1)`` and listed per image in ``impairments.json``.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image

from .classes import M3FD_CLASSES, TARDAL_M3FD_ORDER
from .synthetic_impairments import resolve_impairments
from .synthetic_scene import Scene, render_scene

__all__ = ["generate_synthrgbt", "load_synthrgbt_detection", "synth_scene", "LAYOUTS"]

LAYOUTS = {"mfnet": ("rtfnet", "cmx"), "msrs": ("msrs",), "m3fd": ("voc", "yolo")}

_SPLIT_CODES = {"train": 1, "val": 2, "test": 3}


def synth_scene(
    seed, index, height=240, width=320, night=False, task="segmentation", misregistration_px=0, impairments="none"
) -> Scene:
    """Scene number ``index`` of the world ``seed`` (deterministic); see :func:`render_scene`.

    The impairments come from their own generator, so the base scene is the same for every ``impairments``.
    """
    rng = np.random.default_rng([int(seed), int(index)])
    impairment_rng = np.random.default_rng([int(seed), int(index), 1])
    return render_scene(
        rng,
        height,
        width,
        night,
        task=task,
        misregistration_px=misregistration_px,
        impairments=impairments,
        impairment_rng=impairment_rng,
    )


def _night_flags(seed, split, count, night_fraction):
    """Exactly ``round(count * night_fraction)`` night scenes per split, at seeded positions."""
    flags = np.zeros(count, bool)
    flags[: int(round(count * night_fraction))] = True
    return np.random.default_rng([int(seed), 1000 + _SPLIT_CODES[split]]).permutation(flags)


def _save_png(array, path):
    Image.fromarray(array).save(path, compress_level=1)


def _write_lines(path, names):
    Path(path).write_text("".join(f"{name}\n" for name in names))


def _voc_xml(name, scene, path):
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = f"{name}.png"
    size = ET.SubElement(root, "size")
    height, width = scene.visible.shape[:2]
    for key, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    for box, class_id in zip(scene.boxes, scene.box_classes):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = M3FD_CLASSES[class_id]
        ET.SubElement(obj, "difficult").text = "0"
        bndbox = ET.SubElement(obj, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ET.SubElement(bndbox, key).text = str(int(round(float(value))))
    ET.ElementTree(root).write(path)


def _yolo_txt(scene, path):
    height, width = scene.visible.shape[:2]
    lines = []
    for (x1, y1, x2, y2), class_id in zip(scene.boxes, scene.box_classes):
        tardal_id = TARDAL_M3FD_ORDER.index(M3FD_CLASSES[class_id])
        cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
        lines.append(f"{tardal_id} {cx:.6f} {cy:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}\n")
    Path(path).write_text("".join(lines))


def _prepare_out_dir(out_dir, overwrite):
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{out} is not empty; pass overwrite=True to write into it (same-named files are replaced)"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def generate_synthrgbt(
    out_dir,
    layout="mfnet",
    num_train=64,
    num_test=16,
    height=240,
    width=320,
    seed=0,
    night_fraction=0.5,
    misregistration_px=0,
    *,
    num_val=0,
    variant=None,
    overwrite=False,
    impairments="none",
) -> Path:
    """Write a SynthRGBT data set to ``out_dir`` in a real data set's layout and return its root.

    Args:
        out_dir: folder to create; it must be empty or absent unless ``overwrite=True``.
        layout: ``"mfnet"``, ``"msrs"`` (segmentation, MFNet's 9 classes) or ``"m3fd"`` (detection, 6 classes).
        num_train, num_test: pairs per split (``m3fd``: ``meta/`` lists of that size; the loader may resplit).
        height, width: image size in pixels.
        seed: world seed; the same arguments give byte-identical files.
        night_fraction: share of night scenes in each split (rounded to a whole count).
        misregistration_px: largest random integer shift (pixels per axis) of the infrared image.
        num_val: extra ``val`` split, MFNet layout only.
        variant: ``"rtfnet"`` / ``"cmx"`` for MFNet, ``"voc"`` / ``"yolo"`` for M3FD (defaults: the first).
        overwrite: allow writing into a non-empty ``out_dir``.
        impairments: ``"none"`` (the plain world), ``"realistic"`` (glare, thermal crossover, one-modality
            dropout and misregistration at ``REALISTIC_RATES``) or ``{name: rate}``; anything but ``"none"``
            also writes ``impairments.json`` (rates and, per image name, the impairments applied).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
    variant = variant or LAYOUTS[layout][0]
    if variant not in LAYOUTS[layout]:
        raise ValueError(f"layout {layout!r} has variants {LAYOUTS[layout]}, got {variant!r}")
    if num_val and layout != "mfnet":
        raise ValueError("num_val is only used by the mfnet layout (MSRS and M3FD have no val split)")
    if min(num_train, num_test, num_val) < 0 or height < 16 or width < 16:
        raise ValueError("counts must be >= 0 and height, width >= 16 pixels")
    if not 0.0 <= night_fraction <= 1.0:
        raise ValueError(f"night_fraction must be in [0, 1], got {night_fraction}")
    rates = resolve_impairments(impairments)
    out = _prepare_out_dir(out_dir, overwrite)
    task = "detection" if layout == "m3fd" else "segmentation"

    splits, index = {}, 0
    for split, count in (("train", num_train), ("val", num_val), ("test", num_test)):
        if split == "val" and not count:
            continue
        entries = []
        for night in _night_flags(seed, split, count, night_fraction):
            name = f"{index:05d}" if layout == "m3fd" else f"{index:05d}{'N' if night else 'D'}"
            entries.append((index, name, bool(night)))
            index += 1
        splits[split] = entries

    applied = {}

    def scene_of(index, night):
        scene = synth_scene(seed, index, height, width, night, task, misregistration_px, impairments=rates)
        applied[index] = scene.impairments
        return scene

    writer = {"mfnet": _write_mfnet, "msrs": _write_msrs, "m3fd": _write_m3fd}[layout]
    writer(out, splits, variant, scene_of)
    if any(rates.values()):
        _write_impairments(out / "impairments.json", rates, splits, applied)
    return out


def _write_impairments(path, rates, splits, applied):
    """``{"rates": {name: rate}, "images": {name: {"split", "night", "impairments": {name: parameters}}}}``."""
    images = {
        name: {"split": split, "night": night, "impairments": applied[index]}
        for split, entries in splits.items()
        for index, name, night in entries
    }
    Path(path).write_text(json.dumps({"rates": rates, "images": images}, indent=1) + "\n")


def _write_mfnet(out, splits, variant, scene_of):
    folders = ("images", None, "labels") if variant == "rtfnet" else ("RGB", "Modal", "Label")
    for folder in folders:
        if folder:
            (out / folder).mkdir(exist_ok=True)
    for entries in splits.values():
        for index, name, night in entries:
            scene = scene_of(index, night)
            if variant == "rtfnet":
                _save_png(np.dstack([scene.visible, scene.infrared]), out / "images" / f"{name}.png")
            else:
                _save_png(scene.visible, out / "RGB" / f"{name}.png")
                _save_png(scene.infrared, out / "Modal" / f"{name}.png")
            _save_png(scene.label, out / folders[2] / f"{name}.png")
    for split, entries in splits.items():
        _write_lines(out / f"{split}.txt", [name for _, name, _ in entries])
    if variant == "rtfnet":
        test = splits.get("test", [])
        _write_lines(out / "test_day.txt", [name for _, name, night in test if not night])
        _write_lines(out / "test_night.txt", [name for _, name, night in test if night])


def _write_msrs(out, splits, variant, scene_of):
    for split, entries in splits.items():
        folders = {key: out / split / key for key in ("vi", "ir", "Segmentation_labels")}
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        for index, name, night in entries:
            scene = scene_of(index, night)
            _save_png(scene.visible, folders["vi"] / f"{name}.png")
            _save_png(scene.infrared, folders["ir"] / f"{name}.png")
            _save_png(scene.label, folders["Segmentation_labels"] / f"{name}.png")


def _write_m3fd(out, splits, variant, scene_of):
    vis, ir, ann = ("Vis", "Ir", "Annotation") if variant == "voc" else ("vi", "ir", "labels")
    for folder in (vis, ir, ann, "meta"):
        (out / folder).mkdir(exist_ok=True)
    for entries in splits.values():
        for index, name, night in entries:
            scene = scene_of(index, night)
            _save_png(scene.visible, out / vis / f"{name}.png")
            if variant == "voc":
                _save_png(np.repeat(scene.infrared[..., None], 3, axis=2), out / ir / f"{name}.png")
                _voc_xml(name, scene, out / ann / f"{name}.xml")
            else:
                _save_png(scene.infrared, out / ir / f"{name}.png")
                _yolo_txt(scene, out / ann / f"{name}.txt")
    test_name = "test" if variant == "voc" else "val"
    _write_lines(out / "meta" / "train.txt", [name for _, name, _ in splits.get("train", [])])
    _write_lines(out / "meta" / f"{test_name}.txt", [name for _, name, _ in splits.get("test", [])])
    entries = [entry for split_entries in splits.values() for entry in split_entries]
    _write_lines(out / "meta" / "day.txt", [name for _, name, night in entries if not night])
    _write_lines(out / "meta" / "night.txt", [name for _, name, night in entries if night])


def load_synthrgbt_detection(root, check="header"):
    """Load SynthRGBT's M3FD layout with its ``meta/`` split lists as ``train`` / ``test``, each pair's
    ``condition`` ("day" / "night") taken from ``meta/day.txt`` / ``meta/night.txt``."""
    from datasets import Value

    from .loaders import load_m3fd

    meta = Path(root) / "meta"
    test_list = meta / "test.txt" if (meta / "test.txt").is_file() else meta / "val.txt"  # VOC / YOLO variant
    lists = {"train": meta / "train.txt", "test": test_list, "day": meta / "day.txt", "night": meta / "night.txt"}
    missing = [str(path) for path in lists.values() if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"{root} is not SynthRGBT's M3FD layout: missing {', '.join(missing)}")
    data = load_m3fd(root, split_files={split: lists[split] for split in ("train", "test")}, check=check)
    condition = {name: lighting for lighting in ("day", "night") for name in lists[lighting].read_text().split()}
    for split, dataset in data.items():
        values = [condition.get(name, "unknown") for name in dataset["name"]]
        data[split] = dataset.remove_columns("condition").add_column("condition", values, feature=Value("string"))
    return data
