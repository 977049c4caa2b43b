"""ivgf-hf: IVGF, the fusion-guided infrared + visible general framework, for Hugging Face transformers."""

__version__ = "0.1.0"

from .presets import get_config, list_presets  # noqa: E402

__all__ = ["__version__", "get_config", "list_presets"]
