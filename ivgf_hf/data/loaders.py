"""Loaders of RGB-T data sets from disk into ``datasets.DatasetDict`` (MFNet, MSRS, M3FD, paired folders).

Every loader returns an :class:`~ivgf_hf.data.validation.RGBTDatasetDict` whose splits have the columns
``visible`` (``Image``, RGB), ``infrared`` (``Image``, mode L), ``label`` (``Image``, mode L, segmentation) or
``objects`` (``{"bbox": absolute xyxy pixels, "category": ClassLabel}``, detection), ``name`` and ``condition``
(``"day"`` / ``"night"`` from MFNet-style ``D`` / ``N`` name suffixes, else ``"unknown"``).

Images stay on disk and decode lazily, except MFNet's 4-channel RGB+T files: those are split at load time and the
two halves kept in memory as PNG bytes (``save_to_disk`` once to get a memory-mapped copy). Every sample is
checked (see :mod:`.validation`); ``errors="raise"`` raises :class:`RGBTSampleError` naming the file,
``errors="skip"`` drops broken samples, logs a summary and lists them in ``result.skipped``. Nothing is ever
written inside the data folder.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from .classes import M3FD_CLASSES, MFNET_CLASSES, TARDAL_M3FD_ORDER
from .validation import (
    AnnotationSpec,
    RGBTLayoutError,
    Sample,
    SkippedSample,
    build_split,
    check_errors_argument,
    finish,
)

__all__ = ["load_mfnet", "load_msrs", "load_m3fd", "load_paired_folder", "IMAGE_EXTENSIONS", "MFNET_SPLITS"]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

# Split lists recognised next to MFNet's folders (RTFNet's valid split names plus CMX/Sigma's train2).
MFNET_SPLITS = ("train", "val", "test", "test_day", "test_night", "val_test", "most_wanted", "train2")

_CMX_VISIBLE = ("RGB", "rgb", "Visible", "visible", "vi")
_CMX_INFRARED = ("Modal", "Thermal", "thermal", "ther", "Infrared", "infrared", "ir")
_CMX_LABEL = ("Label", "Labels", "label", "labels")

_MFNET_LAYOUTS = """expected one of these MFNet layouts:
  RTFNet release:  <root>/images/<name>.png (4 channels: RGB + thermal), <root>/labels/<name>.png,
                   <root>/{train,val,test,test_day,test_night}.txt (one name per line)
  CMX / Sigma:     <root>/RGB/<name>.png, <root>/Modal/<name>.png (or Thermal/), <root>/Label/<name>.png,
                   <root>/{train,test}.txt"""

_MSRS_LAYOUT = """expected the MSRS layout:
  <root>/{train,test}/vi/<name>.png, <root>/{train,test}/ir/<name>.png,
  <root>/{train,test}/Segmentation_labels/<name>.png
(other folder layouts: use load_paired_folder)"""

_M3FD_LAYOUTS = """expected one of these M3FD layouts:
  raw release:  <root>/Vis/<name>.png, <root>/Ir/<name>.png, <root>/Annotation/<name>.xml (Pascal VOC)
  TarDAL:       <root>/vi/<name>.png, <root>/ir/<name>.png, <root>/labels/<name>.txt (YOLO: cls cx cy w h)"""


def _root(root):
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist or is not a folder")
    return root


def _index(folder, extensions=IMAGE_EXTENSIONS):
    """``{stem: path}`` of the files in ``folder`` with one of ``extensions``, and ``{stem: paths}`` of the stems
    shared by several files (left out of the index)."""
    by_stem = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in extensions:
            by_stem.setdefault(path.stem, []).append(path)
    found = {stem: paths[0] for stem, paths in by_stem.items() if len(paths) == 1}
    return found, {stem: paths for stem, paths in by_stem.items() if len(paths) > 1}


def _read_names(path, problems):
    """Names listed in a split file, one per line; a trailing image extension is dropped.

    A line that is not UTF-8 text is left out and added to ``problems`` with its line number.
    """
    names = []
    for number, raw in enumerate(Path(path).read_bytes().splitlines(), start=1):
        try:
            name = raw.decode("utf-8").strip()
        except UnicodeDecodeError as error:
            problems.append(
                SkippedSample(
                    str(path),
                    f"line {number} is not UTF-8 text ({error.reason} at byte "
                    f"{error.start}: {raw[error.start : error.start + 4]!r})",
                )
            )
            continue
        if name:
            names.append(name[: -len(Path(name).suffix)] if Path(name).suffix.lower() in IMAGE_EXTENSIONS else name)
    return names


def _warn_if_empty(split, dataset, source):
    """Log a warning for a split without samples, naming where its samples should have come from."""
    if not len(dataset):
        logger.warning("split %r is empty: no usable sample from %s", split, source)


def _first_dir(root, candidates):
    return next((root / name for name in candidates if (root / name).is_dir()), None)


_FIELD_WORDS = {
    "packed": "RGB+T image",
    "visible": "visible",
    "infrared": "infrared",
    "label": "label",
    "annotation": "annotation",
}


def _pair(names, modalities, ambiguous=()):
    """Samples for ``names`` from ``modalities`` = ``{field: (stem index, folder)}``, and the problems.

    A name whose file is missing from some folder while present in another is a "missing partner" problem,
    reported against a file that exists. Names in ``ambiguous`` (already reported) are left out.
    """
    samples, problems = [], []
    for name in names:
        if name in ambiguous:
            continue
        files = {field: index.get(name) for field, (index, _) in modalities.items()}
        present = [path for path in files.values() if path is not None]
        missing = [field for field, path in files.items() if path is None]
        if not missing:
            samples.append(Sample(name=name, **files))
        elif present:
            for field in missing:
                folder = modalities[field][1]
                problems.append(
                    SkippedSample(str(present[0]), f"no {_FIELD_WORDS[field]} partner '{name}.*' in {folder}")
                )
    return samples, problems


def _report_ambiguous(ambiguous, problems):
    """Add a problem per stem shared by several files; returns the stems."""
    for stem, paths in ambiguous.items():
        problems.append(SkippedSample(str(paths[0]), f"several files named {stem!r}: {[p.name for p in paths]}"))
    return set(ambiguous)


def _split_lists(root, splits, problems):
    """``{split: names}`` from ``<root>/<split>.txt`` for the known MFNet split names (or ``splits``)."""
    wanted = splits or MFNET_SPLITS
    lists = {
        split: _read_names(root / f"{split}.txt", problems) for split in wanted if (root / f"{split}.txt").is_file()
    }
    if splits:
        missing = [split for split in splits if split not in lists]
        if missing:
            raise RGBTLayoutError(f"no split file {', '.join(f'{s}.txt' for s in missing)} in {root}")
    if not lists:
        raise RGBTLayoutError(f"no split files ({', '.join(s + '.txt' for s in MFNET_SPLITS)}) in {root}")
    return lists


def _unlisted(split_file, names, known, problems):
    for name in names:
        if name not in known:
            problems.append(SkippedSample(str(split_file), f"lists {name!r} but no such image exists"))


def load_mfnet(root, errors="raise", *, splits=None, check="full", num_workers=None):
    """Load MFNet (RTFNet release or CMX/Sigma layout) as a ``DatasetDict`` with one split per split file.

    Args:
        root: the data set folder.
        errors: ``"raise"`` or ``"skip"`` broken samples (listed in ``result.skipped``).
        splits: split names to load (default: every ``<split>.txt`` of :data:`MFNET_SPLITS` that exists).
        check: ``"full"`` decodes every image; ``"header"`` checks sizes, modes and file integrity only.
        num_workers: threads used for checking (default: CPU count, at most 8).
    """
    check_errors_argument(errors)
    root = _root(root)
    problems = []
    if (root / "images").is_dir() and (root / "labels").is_dir():
        packed, ambiguous_p = _index(root / "images")
        labels, ambiguous_l = _index(root / "labels")
        modalities = {"packed": (packed, root / "images"), "label": (labels, root / "labels")}
    else:
        folders = [_first_dir(root, c) for c in (_CMX_VISIBLE, _CMX_INFRARED, _CMX_LABEL)]
        if None in folders:
            raise RGBTLayoutError(f"{root} is not an MFNet folder; {_MFNET_LAYOUTS}")
        (visible, ambiguous_p), (infrared, ambiguous_i), (labels, ambiguous_l) = (_index(f) for f in folders)
        ambiguous_p = {**ambiguous_p, **ambiguous_i}
        modalities = {
            "visible": (visible, folders[0]),
            "infrared": (infrared, folders[1]),
            "label": (labels, folders[2]),
        }
    ambiguous = _report_ambiguous({**ambiguous_p, **ambiguous_l}, problems)
    known = set().union(ambiguous, *(index for index, _ in modalities.values()))
    datasets = {}
    for split, names in _split_lists(root, splits, problems).items():
        _unlisted(root / f"{split}.txt", names, known, problems)
        samples, pair_problems = _pair([n for n in names if n in known], modalities, ambiguous)
        problems.extend(pair_problems)
        datasets[split], split_problems = build_split(
            samples, with_label=True, num_classes=len(MFNET_CLASSES), check=check, num_workers=num_workers
        )
        problems.extend(split_problems)
        _warn_if_empty(split, datasets[split], root / f"{split}.txt")
    return finish(datasets, _unique(problems), errors, MFNET_CLASSES)


def load_msrs(root, errors="raise", *, check="full", num_workers=None):
    """Load MSRS (``{train,test}/{vi,ir,Segmentation_labels}``) as a ``DatasetDict`` with its train/test splits.

    ``errors``, ``check`` and ``num_workers`` as in :func:`load_mfnet`.
    """
    check_errors_argument(errors)
    root = _root(root)
    split_dirs = [root / s for s in ("train", "val", "test") if any((root / s / m).is_dir() for m in ("vi", "ir"))]
    if not split_dirs:
        raise RGBTLayoutError(f"{root} is not an MSRS folder; {_MSRS_LAYOUT}")
    problems, datasets = [], {}
    for split_dir in split_dirs:
        folders = {
            "visible": split_dir / "vi",
            "infrared": split_dir / "ir",
            "label": split_dir / "Segmentation_labels",
        }
        absent = [str(f) for f in folders.values() if not f.is_dir()]
        if absent:
            raise RGBTLayoutError(f"missing folder(s) {', '.join(absent)}; {_MSRS_LAYOUT}")
        modalities, ambiguous = {}, set()
        for field, folder in folders.items():
            index, shared = _index(folder)
            ambiguous |= _report_ambiguous(shared, problems)
            modalities[field] = (index, folder)
        names = sorted(set(modalities["visible"][0]) | set(modalities["infrared"][0]))
        samples, pair_problems = _pair(names, modalities, ambiguous)
        problems.extend(pair_problems)
        datasets[split_dir.name], split_problems = build_split(
            samples, with_label=True, num_classes=len(MFNET_CLASSES), check=check, num_workers=num_workers
        )
        problems.extend(split_problems)
        _warn_if_empty(split_dir.name, datasets[split_dir.name], split_dir)
    return finish(datasets, _unique(problems), errors, MFNET_CLASSES)


def _m3fd_split(names, seed, test_fraction):
    """Seeded train/test split of the sorted names: ``round(n * test_fraction)`` test names."""
    ordered = sorted(names)
    permutation = np.random.default_rng(seed).permutation(len(ordered))
    n_test = int(round(len(ordered) * test_fraction))
    test = sorted(ordered[i] for i in permutation[:n_test])
    test_set = set(test)
    return {"train": [n for n in ordered if n not in test_set], "test": test}


def _write_split_lists(lists, out_dir, root, seed):
    """Write ``m3fd_seed<seed>_<split>.txt`` to ``out_dir`` (never inside ``root``); returns their paths."""
    out_dir = Path(out_dir).expanduser().resolve()
    if out_dir == root.resolve() or root.resolve() in out_dir.parents:
        raise ValueError(f"split_out {out_dir} is inside the data folder {root}; choose a folder outside it")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, names in lists.items():
        path = out_dir / f"m3fd_seed{seed}_{split}.txt"
        text = "".join(f"{name}\n" for name in names)
        if path.exists() and path.read_text() != text:
            raise FileExistsError(f"{path} exists with a different split; delete it or pass another split_out folder")
        path.write_text(text)
        written[split] = str(path)
    return written


def load_m3fd(
    root,
    split_files=None,
    seed=0,
    errors="raise",
    split_out=None,
    *,
    test_fraction=0.1,
    yolo_class_names=TARDAL_M3FD_ORDER,
    check="full",
    num_workers=None,
):
    """Load M3FD (raw ``Vis/ Ir/ Annotation/`` VOC or TarDAL ``vi/ ir/ labels/`` YOLO) for detection.

    Classes are mapped by name onto :data:`~ivgf_hf.data.classes.M3FD_CLASSES`.

    Args:
        root: the data set folder.
        split_files: ``{split: path to a list of names}``. Without it, the sorted names are split with ``seed``
            into ``train`` and ``test`` (``test_fraction`` of them: 3,780 / 420 for the 4,200 pairs, as in the
            paper) and, when ``split_out`` is given (never inside ``root``), the lists are written there as
            ``m3fd_seed<seed>_{train,test}.txt`` so the split can be published; nothing is written otherwise.
        seed: seed of that split.
        errors: ``"raise"`` or ``"skip"`` broken samples (listed in ``result.skipped``).
        split_out: folder for the written split lists (`None`: the lists are not written).
        test_fraction: share of names in the seeded ``test`` split.
        yolo_class_names: names of the YOLO class ids (TarDAL layout); default TarDAL's order.
        check, num_workers: as in :func:`load_mfnet`.
    """
    check_errors_argument(errors)
    root = _root(root)
    if (root / "Vis").is_dir() and (root / "Ir").is_dir() and (root / "Annotation").is_dir():
        folders, spec = (root / "Vis", root / "Ir", root / "Annotation"), AnnotationSpec("voc", M3FD_CLASSES)
    elif (root / "vi").is_dir() and (root / "ir").is_dir() and (root / "labels").is_dir():
        folders = (root / "vi", root / "ir", root / "labels")
        spec = AnnotationSpec("yolo", M3FD_CLASSES, tuple(yolo_class_names))
    else:
        raise RGBTLayoutError(f"{root} is not an M3FD folder; {_M3FD_LAYOUTS}")
    problems, modalities, ambiguous = [], {}, set()
    for field, folder in zip(("visible", "infrared", "annotation"), folders):
        extensions = (".xml" if spec.format == "voc" else ".txt",) if field == "annotation" else IMAGE_EXTENSIONS
        index, shared = _index(folder, extensions)
        ambiguous |= _report_ambiguous(shared, problems)
        modalities[field] = (index, folder)
    names = set(modalities["visible"][0]) | set(modalities["infrared"][0]) | ambiguous
    if split_files is not None and not hasattr(split_files, "items"):
        raise TypeError(f"split_files must map split names to list files, got {type(split_files).__name__}")
    if split_files:
        lists, used = {}, {}
        for split, path in split_files.items():
            lists[split] = _read_names(path, problems)
            used[split] = str(path)
            _unlisted(path, lists[split], names, problems)
            lists[split] = [n for n in lists[split] if n in names]
    else:
        lists = _m3fd_split(names, seed, test_fraction)
        used = _write_split_lists(lists, split_out, root, seed) if split_out is not None else {}
    datasets = {}
    for split, split_names in lists.items():
        samples, pair_problems = _pair(split_names, modalities, ambiguous)
        problems.extend(pair_problems)
        datasets[split], split_problems = build_split(samples, spec=spec, check=check, num_workers=num_workers)
        problems.extend(split_problems)
        _warn_if_empty(split, datasets[split], used.get(split, root))
    return finish(datasets, _unique(problems), errors, M3FD_CLASSES, used)


def load_paired_folder(
    visible_dir,
    infrared_dir,
    labels_dir=None,
    annotations_dir=None,
    errors="raise",
    *,
    split="train",
    class_names=None,
    annotation_format="auto",
    yolo_class_names=None,
    check="full",
    num_workers=None,
):
    """Load any pair of visible / infrared folders (files matched by name) as a one-split ``DatasetDict``.

    Args:
        visible_dir, infrared_dir: folders of images; ``a.png`` in one pairs with ``a.*`` in the other.
        labels_dir: optional folder of single-channel class-id masks (``label`` column).
        annotations_dir: optional folder of box annotations (``objects`` column), VOC ``.xml`` or YOLO ``.txt``.
        errors: ``"raise"`` or ``"skip"`` broken samples (listed in ``result.skipped``).
        split: name of the split.
        class_names: the box classes when ``annotations_dir`` is given (VOC default: the sorted set of names
            found in the files; names are matched case-insensitively), else the label classes (default MFNet's 9;
            label ids must lie below their count).
        annotation_format: ``"voc"``, ``"yolo"`` or ``"auto"`` (from the files' extension).
        yolo_class_names: names of the YOLO class ids (default ``class_names``), mapped onto ``class_names``.
        check, num_workers: as in :func:`load_mfnet`.
    """
    check_errors_argument(errors)
    folders = {"visible": _root(visible_dir), "infrared": _root(infrared_dir)}
    if labels_dir is not None:
        folders["label"] = _root(labels_dir)
    spec = None
    if annotations_dir is not None:
        folders["annotation"] = _root(annotations_dir)
        spec = _paired_annotation_spec(folders["annotation"], annotation_format, class_names, yolo_class_names)
    problems, modalities, ambiguous = [], {}, set()
    for field, folder in folders.items():
        extensions = (".xml" if spec.format == "voc" else ".txt",) if field == "annotation" else IMAGE_EXTENSIONS
        index, shared = _index(folder, extensions)
        ambiguous |= _report_ambiguous(shared, problems)
        modalities[field] = (index, folder)
    names = sorted(set(modalities["visible"][0]) | set(modalities["infrared"][0]))
    samples, pair_problems = _pair(names, modalities, ambiguous)
    problems.extend(pair_problems)
    label_classes = tuple(class_names) if class_names is not None and spec is None else MFNET_CLASSES
    dataset, split_problems = build_split(
        samples,
        with_label=labels_dir is not None,
        num_classes=len(label_classes),
        spec=spec,
        check=check,
        num_workers=num_workers,
    )
    problems.extend(split_problems)
    _warn_if_empty(split, dataset, f"{folders['visible']} and {folders['infrared']}")
    return finish({split: dataset}, _unique(problems), errors, spec.class_names if spec else label_classes)


def _paired_annotation_spec(folder, annotation_format, class_names, yolo_class_names):
    if annotation_format == "auto":
        suffixes = {p.suffix.lower() for p in folder.iterdir() if p.suffix.lower() in (".xml", ".txt")}
        if len(suffixes) != 1:
            raise RGBTLayoutError(
                f"cannot tell the annotation format of {folder}: found {sorted(suffixes) or 'no .xml or .txt files'};"
                " pass annotation_format='voc' or 'yolo'"
            )
        annotation_format = "voc" if suffixes == {".xml"} else "yolo"
    if annotation_format not in ("voc", "yolo"):
        raise ValueError(f"annotation_format must be 'voc', 'yolo' or 'auto', got {annotation_format!r}")
    if annotation_format == "yolo":
        if class_names is None:
            raise ValueError("YOLO annotations hold class ids only: pass class_names (the name of each id)")
        return AnnotationSpec("yolo", tuple(class_names), tuple(yolo_class_names or class_names))
    if class_names is None:
        class_names = sorted({obj.findtext("name", "").strip() for obj in _voc_objects(folder)})
    return AnnotationSpec("voc", tuple(class_names))


def _voc_objects(folder):
    for path in sorted(folder.glob("*.xml")):
        try:
            yield from ET.parse(path).getroot().iter("object")
        except ET.ParseError:
            continue  # reported with the file name when the sample is checked


def _unique(problems):
    """Problems in order, without repeats (a file can be reached from several split lists)."""
    return list(dict.fromkeys(problems))
