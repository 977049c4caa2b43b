"""Prediction on image files: pairing visible and infrared inputs, checking them, and writing PNG results.

The library side of ``ivgf predict`` (and of the quickstart's example pictures): :func:`collect_pairs` builds the
:class:`InputPair` s of one input mode, :func:`predict_pairs` checks every input and output path before the first
prediction and writes segmentation masks and overlays, or detection box pictures. Importing this module is light
(torch and the model load only when :func:`predict_pairs` runs), so the command line can import it at start.
"""

from pathlib import Path
from typing import NamedTuple, Optional

__all__ = [
    "IMAGE_SUFFIXES",
    "InputPair",
    "PredictInputError",
    "collect_pairs",
    "check_pair",
    "read_pair",
    "output_paths",
    "predict_pairs",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class PredictInputError(ValueError):
    """The inputs cannot be predicted on: unpaired, unreadable, of different sizes, or outputs would be replaced."""


class InputPair(NamedTuple):
    """One prediction input: ``name`` (output stem), ``visible`` path and ``infrared`` path, or ``infrared`` None
    for an MFNet 4-channel RGB+T file in ``visible``."""

    name: str
    visible: Path
    infrared: Optional[Path]


def _images_by_stem(folder: Path) -> dict:
    if not folder.is_dir():
        raise PredictInputError(f"{folder} is not a folder")
    by_stem = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            if path.stem in by_stem:
                raise PredictInputError(f"{by_stem[path.stem]} and {path} have the same name; keep one of them")
            by_stem[path.stem] = path
    if not by_stem:
        raise PredictInputError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return by_stem


def collect_pairs(visible=None, infrared=None, visible_dir=None, infrared_dir=None, rgbt=None, rgbt_dir=None) -> list:
    """The :class:`InputPair` s of exactly one input mode; unpaired files are named in the error."""
    modes = {
        "--visible/--infrared": visible is not None or infrared is not None,
        "--visible-dir/--infrared-dir": visible_dir is not None or infrared_dir is not None,
        "--rgbt": rgbt is not None,
        "--rgbt-dir": rgbt_dir is not None,
    }
    chosen = [mode for mode, given in modes.items() if given]
    if len(chosen) != 1:
        raise PredictInputError(f"give exactly one input mode of {', '.join(modes)}; got {chosen or 'none'}")
    if chosen[0] == "--visible/--infrared":
        if visible is None or infrared is None:
            raise PredictInputError("--visible and --infrared go together (an aligned pair)")
        return [InputPair(Path(visible).stem, Path(visible), Path(infrared))]
    if chosen[0] == "--rgbt":
        return [InputPair(Path(rgbt).stem, Path(rgbt), None)]
    if chosen[0] == "--rgbt-dir":
        return [InputPair(stem, path, None) for stem, path in _images_by_stem(Path(rgbt_dir)).items()]
    if visible_dir is None or infrared_dir is None:
        raise PredictInputError("--visible-dir and --infrared-dir go together")
    visibles, infrareds = _images_by_stem(Path(visible_dir)), _images_by_stem(Path(infrared_dir))
    lonely_visible = [str(visibles[s]) for s in visibles if s not in infrareds]
    lonely_infrared = [str(infrareds[s]) for s in infrareds if s not in visibles]
    if lonely_visible or lonely_infrared:
        parts = []
        if lonely_visible:
            parts.append(f"visible without infrared partner: {', '.join(lonely_visible)}")
        if lonely_infrared:
            parts.append(f"infrared without visible partner: {', '.join(lonely_infrared)}")
        raise PredictInputError("unpaired inputs (files pair by name without extension); " + "; ".join(parts))
    return [InputPair(stem, visibles[stem], infrareds[stem]) for stem in visibles]


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(path)
    except (FileNotFoundError, IsADirectoryError):
        raise PredictInputError(f"{path} does not exist or is not a file") from None
    except (UnidentifiedImageError, OSError) as error:
        raise PredictInputError(f"cannot read {path}: {error}") from None


def check_pair(pair: InputPair) -> None:
    """Read the headers: RGB+T files must have 4 channels, pairs the same size."""
    with _open(pair.visible) as first:
        if pair.infrared is None:
            if len(first.getbands()) != 4:
                raise PredictInputError(
                    f"{pair.visible} has mode {first.mode} ({len(first.getbands())} channel(s)); an MFNet RGB+T "
                    "image has 4 channels (RGB + thermal)"
                )
            return
        with _open(pair.infrared) as second:
            if first.size != second.size:
                raise PredictInputError(
                    f"{pair.visible} is {first.size[0]}x{first.size[1]} but {pair.infrared} is "
                    f"{second.size[0]}x{second.size[1]} (W x H); pairs must be registered to the same size"
                )


def read_pair(pair: InputPair) -> tuple:
    """Decode one pair: (visible uint8 (H, W, 3), infrared uint8 (H, W))."""
    import numpy as np

    from .inference import as_grey_array, as_rgb_array

    def decode(path, convert):
        try:
            with _open(path) as image:
                return convert(image)
        except (OSError, SyntaxError) as error:  # truncated or corrupt data found while decoding
            raise PredictInputError(f"cannot decode {path}: {error}") from None
        except ValueError as error:
            if isinstance(error, PredictInputError):
                raise
            raise PredictInputError(str(error)) from None

    if pair.infrared is None:
        packed = decode(pair.visible, np.asarray)
        return np.ascontiguousarray(packed[..., :3]), np.ascontiguousarray(packed[..., 3])
    visible = decode(pair.visible, lambda image: as_rgb_array(image, str(pair.visible)))
    return visible, decode(pair.infrared, lambda image: as_grey_array(image, str(pair.infrared)))


def output_paths(out_dir, name: str, task: str) -> list:
    """The PNG files written for the input ``name``."""
    out = Path(out_dir)
    if task == "segmentation":
        return [out / f"{name}_mask.png", out / f"{name}_overlay.png"]
    return [out / f"{name}_boxes.png"]


def predict_pairs(
    model,
    processor,
    pairs,
    out_dir,
    *,
    task,
    overwrite=False,
    threshold=0.5,
    sliding_window=None,
    tta_flip=False,
    tta_scales=(1.0,),
    progress=True,
) -> list:
    """Predict every pair and write its PNGs (see :func:`output_paths`); returns the written paths.

    Inputs and output paths are all checked before the first prediction.
    """
    from tqdm.auto import tqdm

    from .inference import detect, segment
    from .visualize import BACKGROUND_NAMES, class_names_of, colorize, draw_detections, overlay, palette_for, save_png

    for pair in pairs:
        check_pair(pair)
    planned = [path for pair in pairs for path in output_paths(out_dir, pair.name, task)]
    existing = [str(path) for path in planned if path.exists()]
    if existing and not overwrite:
        shown = ", ".join(existing[:5]) + (f" and {len(existing) - 5} more" if len(existing) > 5 else "")
        raise PredictInputError(f"{shown} already exist(s); pass --overwrite to replace")
    class_names = class_names_of(model.config.id2label)
    palette = palette_for(class_names)
    transparent = [index for index, name in enumerate(class_names) if name.lower() in BACKGROUND_NAMES]
    written = []
    for pair in tqdm(pairs, desc="predicting", unit="pair", disable=not progress or len(pairs) < 2):
        visible, infrared = read_pair(pair)
        paths = output_paths(out_dir, pair.name, task)
        if task == "segmentation":
            mask = segment(
                model,
                processor,
                visible,
                infrared,
                sliding_window=sliding_window,
                tta_flip=tta_flip,
                tta_scales=tta_scales,
            ).numpy()
            written.append(save_png(colorize(mask, palette), paths[0], overwrite))
            written.append(save_png(overlay(visible, mask, palette, transparent_ids=transparent), paths[1], overwrite))
        else:
            result = detect(model, processor, visible, infrared, threshold=threshold)
            picture = draw_detections(
                visible, result["boxes"], result["labels"], result["scores"], class_names, palette
            )
            written.append(save_png(picture, paths[0], overwrite))
    return written
