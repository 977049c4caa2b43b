"""Register the RGB-T pipelines ("rgbt-semantic-segmentation", "rgbt-object-detection") in this process.

``import ivgf_hf`` calls :func:`register_pipelines` when ``transformers.pipelines`` is imported, so
``transformers.pipeline("rgbt-semantic-segmentation", model=...)`` works with a model object, a saved folder or a Hub
id, without ``trust_remote_code``. Saved folders also carry the pipeline code (``config.custom_pipelines``) for use
without ``ivgf_hf``. The classes live in :mod:`ivgf_hf.modeling.pipeline_ivgf`.
"""

import transformers
from transformers.pipelines import PIPELINE_REGISTRY

from .auto import register_auto_classes
from .modeling.pipeline_ivgf import PIPELINE_TASKS

__all__ = ["register_pipelines", "PIPELINE_TASKS"]


def register_pipelines() -> None:
    """Add the IVGF tasks to transformers' pipeline registry and the IVGF classes to its Auto classes (idempotent)."""
    register_auto_classes()
    for task, (pipeline_class, auto_class, _) in PIPELINE_TASKS.items():
        if PIPELINE_REGISTRY.supported_tasks.get(task, {}).get("impl") is not pipeline_class:
            PIPELINE_REGISTRY.register_pipeline(
                task, pipeline_class=pipeline_class, pt_model=getattr(transformers, auto_class), type="image"
            )
