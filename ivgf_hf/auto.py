"""Register the IVGF classes with transformers' Auto classes in this process (pip-installed use).

Every saved folder carries its own code files and ``auto_map`` (each IVGF class sets ``_auto_class``, so plain
``save_pretrained`` writes them) and loads with ``trust_remote_code=True`` where ``ivgf_hf`` is not installed.
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

__all__ = ["register_auto_classes"]


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
