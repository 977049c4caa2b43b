"""Training data: a recipe's data set, its transforms, and loaders whose order and augmentation depend only on seeds.

Reproducibility and exact resume rest on one rule: sample ``index`` of epoch ``epoch`` is augmented with the torch
random generator seeded by ``(seed, epoch, index)`` (forked, so the global generator is untouched), and the order of
epoch ``epoch`` is a permutation seeded by ``(seed, epoch)``. A batch is therefore the same whatever the number of
DataLoader workers, and a resumed run picks up at the exact batch by counting, without replaying the data.
"""

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data import (
    MFNET_CLASSES,
    CutoutMixConfig,
    DetectionTrainTransform,
    SegmentationTrainTransform,
    collate_detection,
    collate_segmentation,
    load_m3fd,
    load_mfnet,
    load_msrs,
)
from .recipes import RecipeError

__all__ = [
    "load_recipe_data",
    "check_splits",
    "dataset_class_names",
    "build_train_transform",
    "SeededTransformDataset",
    "EpochBatchSampler",
    "train_loader",
    "sample_seed",
]

_TARGET_COLUMN = {"segmentation": "label", "detection": "objects"}


def sample_seed(*values: int) -> int:
    """A 64-bit seed mixed from non-negative ints, e.g. ``(seed, epoch, index)`` (neighbours give unrelated seeds)."""
    return int(np.random.SeedSequence(list(values)).generate_state(1, dtype=np.uint64)[0])


def _m3fd_lists(root: Path, recipe, split_out: Path, reuse_written: bool) -> Optional[dict]:
    if recipe.split_files:
        return dict(recipe.split_files)
    if recipe.dataset == "synthrgbt":
        meta = root / "meta"
        test_list = meta / "test.txt" if (meta / "test.txt").is_file() else meta / "val.txt"  # VOC / YOLO variant
        lists = {"train": meta / "train.txt", "test": test_list}
        missing = [str(p) for p in lists.values() if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"SynthRGBT detection data needs its split lists; missing {missing}")
        return lists
    if reuse_written:
        return {split: split_out / f"m3fd_seed{recipe.split_seed}_{split}.txt" for split in ("train", "test")}
    return None


def load_recipe_data(recipe, split_out, reuse_written_splits: bool = False):
    """The recipe's data set as an ``RGBTDatasetDict`` (images are checked by header, decoded lazily).

    M3FD without ``split_files`` is split with ``split_seed`` and the lists are written to ``split_out`` (the run
    folder); with ``reuse_written_splits`` those lists are read instead (the other processes of a distributed run).
    SynthRGBT is read with the MSRS loader when it has MSRS's layout, else with the MFNet loader (segmentation),
    and with the M3FD loader and its ``meta/`` lists (detection).
    """
    if recipe.data_root is None:
        raise RecipeError("the recipe has no data_root; pass --data-root (or data_root=...)")
    root = Path(recipe.data_root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data_root {root} does not exist or is not a folder")
    split_out = Path(split_out)
    if recipe.task == "detection":
        data = load_m3fd(
            root,
            split_files=_m3fd_lists(root, recipe, split_out, reuse_written_splits),
            seed=recipe.split_seed,
            split_out=split_out,
            check="header",
        )
    elif recipe.dataset == "msrs" or (recipe.dataset == "synthrgbt" and (root / recipe.train_split / "vi").is_dir()):
        data = load_msrs(root, check="header")
    else:
        data = load_mfnet(root, check="header")
    check_splits(data, recipe, root)
    return data


def check_splits(data, recipe, where="the data set") -> None:
    """Raise :class:`RecipeError` unless ``data`` has the recipe's ``train_split`` and ``eval_split``."""
    for role, split in (("train_split", recipe.train_split), ("eval_split", recipe.eval_split)):
        if split is not None and split not in data:
            raise RecipeError(f"{role} {split!r} is not in {where}; its splits are {list(data)}")


def dataset_class_names(data, task: str) -> list:
    """Class names of a loaded data set: the loaders' ``class_names``, else the ``objects.category`` labels
    (detection) or MFNet's 9 classes (segmentation)."""
    names = list(getattr(data, "class_names", ()) or ())
    if names:
        return names
    if task == "detection":
        split = next(iter(data.values()))
        return list(split.features["objects"]["category"].feature.names)
    return list(MFNET_CLASSES)


def build_train_transform(recipe, processor, modalities: str = "both"):
    """The training transform of the recipe's task; normalisation comes from ``processor``.

    ``modalities`` is the model's ``config.modalities``: cutout&mix is refused for a single-modality model, whose
    only input would receive patches of the other modality.
    """
    if recipe.cma and modalities != "both":
        raise RecipeError(
            f"cma=True would paste the other modality into the only input of a {modalities}-only model; "
            "train single-modality models with cma=False"
        )
    cma = CutoutMixConfig(**recipe.cma_config) if recipe.cma else None
    common = dict(
        crop_size=recipe.crop_size,
        scale_range=recipe.scale_range,
        hflip_prob=recipe.hflip_prob,
        photometric=recipe.photometric,
        cma=cma,
        processor=processor,
    )
    if recipe.task == "segmentation":
        return SegmentationTrainTransform(cat_max_ratio=recipe.cat_max_ratio, **common)
    return DetectionTrainTransform(**common)


class SeededTransformDataset(Dataset):
    """Rows of a ``datasets.Dataset`` through a transform's ``apply``, with seeded randomness per sample.

    Keys are ``(epoch, index)`` pairs (a plain index means epoch 0). The transform runs under
    ``torch.random.fork_rng`` seeded with :func:`sample_seed`, so it neither reads nor advances the global
    generator.
    """

    def __init__(self, rows, transform, task: str, seed: int):
        self.target_column = _TARGET_COLUMN[task]
        missing = [c for c in ("visible", "infrared", self.target_column) if c not in rows.column_names]
        if missing:
            raise KeyError(f"the {task} data set lacks column(s) {missing}; it has {rows.column_names}")
        self.rows = rows.select_columns(["visible", "infrared", self.target_column])
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (0, key)
        row = self.rows[int(index)]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(self.seed, epoch, int(index)))
            return self.transform.apply(row["visible"], row["infrared"], row[self.target_column])


class EpochBatchSampler:
    """Endless per-process batches of ``(epoch, index)`` keys, starting at global micro-batch ``start``.

    Epoch ``e`` is a permutation of the samples seeded by ``(seed, e)``, cut into global batches of
    ``batch_size x num_processes`` samples (the remainder is dropped); process ``r`` takes the ``r``-th
    ``batch_size`` slice of each. Global micro-batch ``n`` is batch ``n % batches_per_epoch`` of epoch
    ``n // batches_per_epoch``.
    """

    def __init__(
        self, num_samples: int, batch_size: int, num_processes: int, process_index: int, seed: int, start: int = 0
    ):
        global_batch = batch_size * num_processes
        if num_samples < global_batch:
            raise ValueError(
                f"the training set has {num_samples} samples, fewer than one global batch of {global_batch} "
                f"({batch_size} per process x {num_processes} processes)"
            )
        self.num_samples, self.batch_size = num_samples, batch_size
        self.num_processes, self.process_index = num_processes, process_index
        self.seed, self.start = seed, start
        self.batches_per_epoch = num_samples // global_batch

    def permutation(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(sample_seed(self.seed, epoch))
        return torch.randperm(self.num_samples, generator=generator)

    def __iter__(self):
        position, epoch, order = self.start, None, None
        while True:
            current, batch = divmod(position, self.batches_per_epoch)
            if current != epoch:
                epoch, order = current, self.permutation(current)
            offset = (batch * self.num_processes + self.process_index) * self.batch_size
            yield [(epoch, int(i)) for i in order[offset : offset + self.batch_size]]
            position += 1


def train_loader(dataset: SeededTransformDataset, sampler: EpochBatchSampler, task: str, num_workers: int):
    """An endless DataLoader over ``sampler`` (workers, if any, stay alive for the whole run)."""
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate_segmentation if task == "segmentation" else collate_detection,
        num_workers=num_workers,
        persistent_workers=False,
        prefetch_factor=2 if num_workers else None,
    )
