"""Writing a loaded RGB-T ``DatasetDict`` to self-contained parquet files.

``Dataset.to_parquet`` stores only the paths of images that live on disk (a moved or deleted source folder
breaks the file), so the image bytes are embedded first, the same step ``push_to_hub`` performs.
"""

from __future__ import annotations

from pathlib import Path

from datasets.table import embed_table_storage

__all__ = ["embed_images", "save_parquet"]


def embed_images(dataset):
    """A copy of ``dataset`` whose ``Image`` columns hold the image bytes instead of file paths."""
    embedded = dataset.with_format("arrow").map(embed_table_storage, batched=True, desc="embedding images")
    return embedded.with_format(None)


def save_parquet(dataset_dict, out_dir, overwrite=False) -> dict:
    """Write each split to ``<out_dir>/<split>.parquet`` with images embedded; returns ``{split: path}``.

    Existing files are only replaced with ``overwrite=True``. Read back with
    ``datasets.load_dataset("parquet", data_files={split: path, ...})``.
    """
    out = Path(out_dir)
    paths = {split: out / f"{split}.parquet" for split in dataset_dict}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)} exist; pass overwrite=True to replace them")
    out.mkdir(parents=True, exist_ok=True)
    for split, dataset in dataset_dict.items():
        embed_images(dataset).to_parquet(str(paths[split]))
    return {split: str(path) for split, path in paths.items()}
