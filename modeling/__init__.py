"""``ivgf_hf.modeling``: the files that ship to a Hub repo (flat, sibling imports only).

This ``__init__`` is package glue for the pip install and is never copied to the Hub.
"""

from .configuration_ivgf import IVGFConfig
from .detection_ivgf import IVGFForObjectDetection, IVGFObjectDetectionOutput
from .encoder_ivgf import IVGFEncoder, IVGFEncoderOutput
from .image_processing_ivgf import IVGFImageProcessor
from .modeling_ivgf import (
    IVGFBackbone,
    IVGFForSemanticSegmentation,
    IVGFModel,
    IVGFModelOutput,
    IVGFPreTrainedModel,
)

__all__ = [
    "IVGFConfig",
    "IVGFEncoder",
    "IVGFEncoderOutput",
    "IVGFImageProcessor",
    "IVGFPreTrainedModel",
    "IVGFModel",
    "IVGFModelOutput",
    "IVGFBackbone",
    "IVGFForSemanticSegmentation",
    "IVGFForObjectDetection",
    "IVGFObjectDetectionOutput",
]
