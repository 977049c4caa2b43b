"""ivgf-hf: IVGF, the fusion-guided infrared + visible general framework, for Hugging Face transformers.

``import ivgf_hf`` is light (standard library only, so ``ivgf --help`` starts fast): the names below are imported
on first use (PEP 562 ``__getattr__``). The RGB-T pipelines and the Auto classes are registered with transformers
when ``transformers.pipelines`` is imported (at once if it already is), see :mod:`ivgf_hf._pipeline_hook`.
"""

import importlib

__version__ = "0.1.0"

# public name -> module (relative to this package) that defines it
_LAZY = {
    "get_config": ".presets",
    "list_presets": ".presets",
    "PRESETS": ".presets",
    "register_auto_classes": ".auto",
    "register_pipelines": ".pipelines",
    "load_evaluate_metric": ".evaluation.evaluate_metrics",
    "IVGFConfig": ".modeling",
    "IVGFImageProcessor": ".modeling",
    "IVGFModel": ".modeling",
    "IVGFBackbone": ".modeling",
    "IVGFForSemanticSegmentation": ".modeling",
    "IVGFForObjectDetection": ".modeling",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


from ._pipeline_hook import install as _install_pipeline_hook  # noqa: E402

_install_pipeline_hook()
