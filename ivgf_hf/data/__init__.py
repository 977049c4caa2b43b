"""RGB-T data: loaders into ``datasets``, joint transforms with cutout&mix, and the SynthRGBT generator."""

from .classes import (
    IGNORE_INDEX,
    M3FD_CLASSES,
    M3FD_PALETTE,
    MFNET_CLASSES,
    MFNET_PALETTE,
    TARDAL_M3FD_ORDER,
    colorize_mask,
    id2label,
)
from .cutout_mix import CutoutMix, CutoutMixConfig
from .export import embed_images, save_parquet
from .loaders import load_m3fd, load_mfnet, load_msrs, load_paired_folder
from .synthetic import generate_synthrgbt, load_synthrgbt_detection, synth_scene
from .synthetic_impairments import IMPAIRMENTS, REALISTIC_RATES
from .transforms import (
    DetectionEvalTransform,
    DetectionTrainTransform,
    Normalization,
    PhotometricDistortion,
    RandomScaleCrop,
    SegmentationEvalTransform,
    SegmentationTrainTransform,
    collate_detection,
    collate_segmentation,
)
from .validation import RGBTDatasetDict, RGBTLayoutError, RGBTSampleError, SkippedSample

__all__ = [
    "IGNORE_INDEX",
    "M3FD_CLASSES",
    "M3FD_PALETTE",
    "MFNET_CLASSES",
    "MFNET_PALETTE",
    "TARDAL_M3FD_ORDER",
    "colorize_mask",
    "id2label",
    "CutoutMix",
    "CutoutMixConfig",
    "embed_images",
    "save_parquet",
    "load_m3fd",
    "load_mfnet",
    "load_msrs",
    "load_paired_folder",
    "generate_synthrgbt",
    "load_synthrgbt_detection",
    "synth_scene",
    "IMPAIRMENTS",
    "REALISTIC_RATES",
    "DetectionEvalTransform",
    "DetectionTrainTransform",
    "Normalization",
    "PhotometricDistortion",
    "RandomScaleCrop",
    "SegmentationEvalTransform",
    "SegmentationTrainTransform",
    "collate_detection",
    "collate_segmentation",
    "RGBTDatasetDict",
    "RGBTLayoutError",
    "RGBTSampleError",
    "SkippedSample",
]
