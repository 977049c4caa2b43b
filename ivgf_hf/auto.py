"""Register the IVGF classes with transformers' Auto classes in this process (pip-installed use).

Saved folders carry their own ``auto_map`` (see :mod:`ivgf_hf.hub`) and load with ``trust_remote_code=True``
where ``ivgf_hf`` is not installed.
"""

from transformers import (
    AutoBackbone,
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForObjectDetection,
    AutoModelForSemanticSegmentation,
)

from .modeling.configuration_ivgf import IVGFConfig
from .modeling.detection_ivgf import IVGFForObjectDetection
from .modeling.image_processing_ivgf import IVGFImageProcessor
from .modeling.modeling_ivgf import IVGFBackbone, IVGFForSemanticSegmentation, IVGFModel

__all__ = ["register_auto_classes", "register_for_auto_class"]


def register_auto_classes() -> None:
    """Make ``AutoConfig`` / ``AutoModel...`` / ``AutoImageProcessor`` resolve ``model_type="ivgf"`` (idempotent)."""
    AutoConfig.register(IVGFConfig.model_type, IVGFConfig, exist_ok=True)
    AutoModel.register(IVGFConfig, IVGFModel, exist_ok=True)
    AutoBackbone.register(IVGFConfig, IVGFBackbone, exist_ok=True)
    AutoModelForSemanticSegmentation.register(IVGFConfig, IVGFForSemanticSegmentation, exist_ok=True)
    AutoModelForObjectDetection.register(IVGFConfig, IVGFForObjectDetection, exist_ok=True)
    _register_image_processor()


def _register_image_processor() -> None:
    try:  # transformers 5.x: backends by name; a positional class would register the "pil" backend
        AutoImageProcessor.register(
            IVGFConfig, image_processor_classes={"torchvision": IVGFImageProcessor}, exist_ok=True
        )
    except TypeError:  # transformers 4.x
        AutoImageProcessor.register(IVGFConfig, slow_image_processor_class=IVGFImageProcessor, exist_ok=True)


def register_for_auto_class() -> None:
    """Record the ``auto_map`` entries that ``save_pretrained`` writes, so saved folders load as remote code."""
    IVGFConfig.register_for_auto_class()
    IVGFModel.register_for_auto_class("AutoModel")
    IVGFBackbone.register_for_auto_class("AutoBackbone")
    IVGFForSemanticSegmentation.register_for_auto_class("AutoModelForSemanticSegmentation")
    IVGFForObjectDetection.register_for_auto_class("AutoModelForObjectDetection")
    IVGFImageProcessor.register_for_auto_class("AutoImageProcessor")
