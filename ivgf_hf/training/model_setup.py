"""Build the model and processor a recipe trains: from scratch, from InfMAE / MCMAE weights, or from a saved IVGF.

Also the export of trained weights as a Hub folder (safetensors, config with ``auto_map``, processor, code files).
"""

import logging
from pathlib import Path

import torch

from ..conversion import load_foundation_weights
from ..hub import export_for_hub
from ..modeling.detection_ivgf import IVGFForObjectDetection
from ..modeling.image_processing_ivgf import IVGFImageProcessor
from ..modeling.modeling_ivgf import IVGFForSemanticSegmentation
from ..presets import get_config

__all__ = ["MODEL_CLASSES", "build_model", "enable_gradient_checkpointing", "export_model"]

logger = logging.getLogger(__name__)

MODEL_CLASSES = {"segmentation": IVGFForSemanticSegmentation, "detection": IVGFForObjectDetection}


def _label_maps(class_names) -> dict:
    names = [str(name) for name in class_names]
    return {"id2label": dict(enumerate(names)), "label2id": {name: i for i, name in enumerate(names)}}


def _load_processor(source: str) -> IVGFImageProcessor:
    try:
        return IVGFImageProcessor.from_pretrained(source)
    except OSError:
        logger.warning("%s has no image processor configuration; using IVGFImageProcessor() defaults", source)
        return IVGFImageProcessor()


def build_model(recipe, class_names, class_weights=None) -> tuple:
    """``(model, processor, init_report)`` for ``recipe`` with a head for ``class_names``.

    ``class_weights`` (one per class, segmentation) become the config's ``semantic_loss_class_weights``.

    * ``recipe.init_from`` (folder or Hub id): ``from_pretrained`` in float32 with the recipe's
      ``model_overrides``; a head of another size is re-initialised (reported as mismatched).
    * ``infrared_checkpoint`` / ``visible_checkpoint``: the ``preset`` architecture, encoders filled from the
      converted InfMAE / MCMAE checkpoints (:func:`ivgf_hf.conversion.load_foundation_weights`).
    * neither: the ``preset`` architecture from scratch (the paper's "IVGF (Scratch)").

    ``init_report`` is text describing what was loaded (saved with the run).
    """
    model_class = MODEL_CLASSES[recipe.task]
    labels = _label_maps(class_names)
    if class_weights is not None:
        labels["semantic_loss_class_weights"] = list(class_weights)
    if recipe.init_from:
        model, info = model_class.from_pretrained(
            recipe.init_from,
            dtype=torch.float32,
            ignore_mismatched_sizes=True,
            output_loading_info=True,
            **labels,
            **recipe.model_overrides,
        )
        processor = _load_processor(recipe.init_from)
        lines = [f"initialised from {recipe.init_from}"]
        for kind in ("missing_keys", "mismatched_keys", "unexpected_keys"):
            keys = sorted(str(k) for k in info.get(kind, ()))
            lines.append(f"{len(keys)} {kind.replace('_', ' ')}" + (":" if keys else ""))
            lines += [f"  - {key}" for key in keys]
        return model.train(), processor, "\n".join(lines)

    model = model_class(get_config(recipe.preset, **labels, **recipe.model_overrides))
    paired = ""
    if recipe.paired_init:
        shared = _share_initial_weights(model, model_class, recipe, labels)
        paired = f"paired init: {shared} encoder / head tensors as the seed's sum-fusion model"
    processor = IVGFImageProcessor(ir_num_channels=model.config.num_channels_ir)
    if recipe.infrared_checkpoint or recipe.visible_checkpoint:
        results = load_foundation_weights(model, recipe.infrared_checkpoint, recipe.visible_checkpoint)
        sources = {"infrared": recipe.infrared_checkpoint, "visible": recipe.visible_checkpoint}
        parts = [f"{name} encoder from {sources[name]}\n{r.report()}" for name, r in results.items()]
        return model.train(), processor, "\n\n".join(parts + ([paired] if paired else []))
    report = f"preset {recipe.preset!r} from scratch (random initialisation)"
    return model.train(), processor, report + (f"; {paired}" if paired else "")


# Config fields that select the fusion modules or the encoders: the paired-init reference ignores them.
_VARIANT_FIELDS = ("modalities", "use_fem", "use_tem", "use_agf")


def _share_initial_weights(model, model_class, recipe, labels) -> int:
    """Give ``model`` the initial encoder and head weights of the seed's sum-fusion model; returns the tensor count.

    The reference is built from ``torch.manual_seed(recipe.seed)`` inside a forked RNG (the caller's random state
    is unchanged), so every variant of one seed (sum fusion, IVGF, an ablation row, a single-modality model) starts
    from the same encoders and head: a paired comparison, where only the fusion modules differ. Tensors the
    reference lacks (FEM / TEM / AGF) or whose shape differs keep the model's own initialisation.
    """
    overrides = {k: v for k, v in recipe.model_overrides.items() if k not in _VARIANT_FIELDS}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        reference = model_class(
            get_config(recipe.preset, **labels, **overrides, use_fem=False, use_tem=False, use_agf=False)
        )
    reference_state = reference.state_dict()
    own = model.state_dict()
    shared = {k: v for k, v in reference_state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(shared, strict=False)
    return len(shared)


def enable_gradient_checkpointing(model) -> None:
    """Recompute activations in the backward pass (transformers 5's API, or 4.x's)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def export_model(model, processor, folder, check: bool) -> Path:
    """Save ``model`` with ``processor`` as a Hub folder (float32 safetensors, plain BatchNorm, on the CPU).

    A model on another device or dtype, or with SyncBatchNorm, is exported through a CPU float32 copy. The folder
    loads with ``from_pretrained(folder, trust_remote_code=True)``; ``check`` proves that in a fresh process (see
    :func:`ivgf_hf.hub.export_for_hub`). An existing folder is replaced.
    """
    plain = all(p.device.type == "cpu" and p.dtype == torch.float32 for p in model.parameters()) and not any(
        isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules()
    )
    if not plain:
        state = {
            key: value.detach().to("cpu", torch.float32 if value.is_floating_point() else value.dtype)
            for key, value in model.state_dict().items()
        }
        model = type(model)(model.config)
        model.load_state_dict(state)
    return export_for_hub(model, processor, folder, overwrite=True, check=check)
