"""Convert the published InfMAE / MCMAE (ConvMAE) checkpoints into IVGF encoder weights.

Accepted inputs (see ``encoders.md`` of the project references):

* MAE pretraining checkpoints of InfMAE and MCMAE: ``{"model": state_dict, "optimizer": ..., "args": ...}`` or the
  bare state dict. Decoder, mask token, the pretraining-only skip convolutions, InfMAE's masking ``patch_embed``
  and the final ``norm`` (unused by every dense-prediction wrapper) are dropped; ``pos_embed`` is resized from the
  checkpoint grid to the configuration grid (bicubic, align_corners=False).
* ConvMAE segmentation backbones (mmsegmentation ``ConvMAE``): additionally ``gamma_1`` / ``gamma_2``,
  ``relative_position_bias_table`` and ``fpn.*``; ``relative_position_index`` buffers are rebuilt, not loaded.
  Whole mmseg checkpoints (``backbone.`` prefix, ``decode_head.*``) are accepted; the heads are dropped.

Every dropped key and every model key left unfilled is reported by name; unknown keys and shape mismatches are
errors.
"""

import argparse
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import torch
from timm.models import adapt_input_conv
from torch import nn

from .modeling.configuration_ivgf import IVGFConfig
from .modeling.encoder_ivgf import (
    IVGFEncoder,
    init_encoder_weights,
    interpolate_pos_embed,
    resize_relative_position_table,
)

__all__ = [
    "ConversionResult",
    "CheckpointFormatError",
    "checkpoint_origin",
    "load_checkpoint_file",
    "convert_mae_checkpoint",
    "load_original_encoder",
    "build_encoder",
    "encoder_parameter_count",
    "load_foundation_weights",
    "save_original_encoder",
]

# Keys of the original checkpoints that the IVGF encoder does not use (full-key regular expressions).
_DROPPED_PATTERNS = (
    r"mask_token",
    r"decoder_.*",
    r"stage[12]_output_decode\..*",
    r"patch_embed\.proj\..*",
    r"norm\.(weight|bias)",
    r"blocks3\.\d+\.attn\.relative_position_index",
)
_RENAMES = (
    (re.compile(r"^blocks3\.(\d+)\.gamma_1$"), r"blocks3.\1.layer_scale_1.gamma"),
    (re.compile(r"^blocks3\.(\d+)\.gamma_2$"), r"blocks3.\1.layer_scale_2.gamma"),
    (re.compile(r"^fpn\.0\.(.*)$"), r"stage4.conv.\1"),
    (re.compile(r"^fpn\.1\.(.*)$"), r"stage4.norm.\1"),
)
# IVGF name -> original name, the inverse of _RENAMES (for save_original_encoder).
_ORIGINAL_NAMES = (
    (re.compile(r"^blocks3\.(\d+)\.layer_scale_1\.gamma$"), r"blocks3.\1.gamma_1"),
    (re.compile(r"^blocks3\.(\d+)\.layer_scale_2\.gamma$"), r"blocks3.\1.gamma_2"),
    (re.compile(r"^stage4\.conv\.(.*)$"), r"fpn.0.\1"),
    (re.compile(r"^stage4\.norm\.(.*)$"), r"fpn.1.\1"),
)
_SEGMENTATION_MARKERS = ("gamma_1", "relative_position_bias_table", "fpn.0.weight")
_REQUIRED_KEYS = ("patch_embed1.proj.weight", "blocks3.0.attn.qkv.weight", "pos_embed")
_WRAPPER_KEYS = ("model", "state_dict", "module")


class CheckpointFormatError(ValueError):
    """The state dict is neither an InfMAE/MCMAE pretraining checkpoint nor a ConvMAE segmentation backbone."""


@dataclass
class ConversionResult:
    """What :func:`convert_mae_checkpoint` produced and what it did with every key.

    Attributes:
        state_dict: encoder weights with IVGF names (prefixed by ``prefix`` when one was given).
        source_format: ``"mae_pretraining"`` or ``"segmentation_backbone"``.
        dropped_keys: checkpoint keys that were not used, by original name.
        missing_keys: model keys the checkpoint could not fill (they keep their initial values).
        resized: ``{key: (old_shape, new_shape)}`` for position tables resized to the configuration grid.
        origin: what the checkpoint says about where it comes from (see :func:`checkpoint_origin`).
    """

    state_dict: dict
    source_format: str
    dropped_keys: list = field(default_factory=list)
    missing_keys: list = field(default_factory=list)
    resized: dict = field(default_factory=dict)
    origin: str = ""

    def report(self) -> str:
        """A human-readable summary listing every dropped and unfilled key."""
        lines = [f"source format: {self.source_format}; {len(self.state_dict)} tensors converted"]
        if self.origin:
            lines.append(f"origin: {self.origin}")
        for key, (old, new) in sorted(self.resized.items()):
            lines.append(f"resized {key}: {old} -> {new}")
        lines.append(f"dropped {len(self.dropped_keys)} checkpoint keys" + (":" if self.dropped_keys else ""))
        lines += [f"  - {key}" for key in self.dropped_keys]
        lines.append(
            f"{len(self.missing_keys)} model keys not in the checkpoint (kept at their initial values)"
            + (":" if self.missing_keys else "")
        )
        lines += [f"  - {key}" for key in self.missing_keys]
        return "\n".join(lines)


def load_checkpoint_file(path: Union[str, Path]) -> dict:
    """Read a ``.pth`` / ``.pt`` / ``.bin`` (safely: tensors and ``argparse.Namespace`` only) or ``.safetensors``
    file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointFormatError(f"{path} is empty (0 bytes); download or copy the checkpoint again")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except SafetensorError as error:
            raise CheckpointFormatError(f"{path} is not a complete safetensors file: {error}") from None
    with torch.serialization.safe_globals([argparse.Namespace]):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises UnpicklingError or RuntimeError for unsafe or broken files
            raise CheckpointFormatError(
                f"{path} could not be read with torch.load(weights_only=True) (only tensors and argparse.Namespace "
                f"are allowed): {error}"
            ) from error


def _unwrap(checkpoint: dict) -> tuple:
    """Return (flat state dict with wrapper prefixes removed, keys dropped as belonging to task heads)."""
    if not isinstance(checkpoint, dict):
        raise CheckpointFormatError(f"expected a dict of tensors, got {type(checkpoint).__name__}")
    for wrapper in _WRAPPER_KEYS:
        if isinstance(checkpoint.get(wrapper), dict):
            checkpoint = checkpoint[wrapper]
            break
    non_tensors = [key for key, value in checkpoint.items() if not isinstance(value, torch.Tensor)]
    if non_tensors:
        raise CheckpointFormatError(f"entries that are not tensors: {non_tensors[:10]}")
    state = {key.removeprefix("module."): value for key, value in checkpoint.items()}
    dropped = []
    for prefix in ("backbone.", "encoder."):
        if any(key.startswith(prefix) for key in state):
            dropped += sorted(key for key in state if not key.startswith(prefix))
            state = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
            break
    return state, dropped


def _detect_format(state: dict) -> str:
    missing = [key for key in _REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointFormatError(
            "the state dict is neither an InfMAE/MCMAE pretraining checkpoint nor a ConvMAE segmentation backbone: "
            f"missing {missing}; first keys found: {sorted(state)[:8]}"
        )
    if any(marker in key for key in state for marker in _SEGMENTATION_MARKERS):
        return "segmentation_backbone"
    return "mae_pretraining"


_ORIGIN_NAMES = {"infrared": ("infmae",), "visible": ("mcmae", "convmae", "convvit")}
_SAME_ARCHITECTURE = "InfMAE and MCMAE encoders have the same keys and shapes, so their weights cannot be told apart"


def checkpoint_origin(checkpoint: dict) -> tuple:
    """What a checkpoint says about its origin: ``(modality or None, description)``.

    Evidence, strongest first: the saved training arguments (``args.model``, e.g. ``infmae_vit_base_patch16`` or
    ``convmae_convvit_base_patch16``); InfMAE's masking ``patch_embed.proj`` (only InfMAE pretraining has it); a
    pretraining decoder without it (MCMAE / ConvMAE). Bare encoder weights and segmentation backbones carry none:
    the modality is then None. Contradicting evidence also gives None.
    """
    votes, notes = set(), []
    args = checkpoint.get("args") if isinstance(checkpoint, dict) else None
    args = vars(args) if isinstance(args, argparse.Namespace) else args if isinstance(args, dict) else {}
    model_name = str(args.get("model", ""))
    if model_name:
        notes.append(f"saved arguments name the model {model_name!r}")
        votes |= {m for m, names in _ORIGIN_NAMES.items() if any(n in model_name.lower() for n in names)}
    if args.get("data_path"):
        notes.append(f"trained on {args['data_path']!r}")
    try:
        state = _unwrap(checkpoint)[0]
    except CheckpointFormatError:
        state = {}
    if "patch_embed.proj.weight" in state:
        notes.append("it holds InfMAE's masking patch_embed.proj (InfMAE pretraining)")
        votes.add("infrared")
    elif any(key.startswith("decoder_") for key in state):
        notes.append("it holds a pretraining decoder without InfMAE's patch_embed.proj (MCMAE / ConvMAE pretraining)")
        votes.add("visible")
    if len(votes) == 1:
        return votes.pop(), "; ".join(notes)
    if votes:
        return None, "; ".join(notes) + " (contradicting evidence)"
    return None, "; ".join(notes + [f"no origin recorded ({_SAME_ARCHITECTURE})"])


def _check_finite(state: dict) -> None:
    bad = [key for key, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        shown = ", ".join(bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
        raise CheckpointFormatError(
            f"{len(bad)} checkpoint tensor(s) hold NaN or infinite values: {shown}; the file is damaged or comes from "
            "a diverged run"
        )


def build_encoder(config: IVGFConfig, modality: str, device=None) -> IVGFEncoder:
    """An :class:`IVGFEncoder` for one modality of ``config`` (on ``device``; ``"meta"`` allocates nothing)."""
    with torch.device(device or "cpu"):
        return IVGFEncoder(
            config.encoder_settings(modality), config.layer_norm_eps, config.conv_layer_norm_eps, config.hidden_act
        )


def _rename(key: str) -> str:
    for pattern, replacement in _RENAMES:
        if pattern.match(key):
            return pattern.sub(replacement, key)
    return key


def _adapt(key: str, value: torch.Tensor, expected: torch.Size, result: ConversionResult) -> torch.Tensor:
    """Reshape ``value`` to the model's ``expected`` shape where a documented rule exists."""
    if key == "pos_embed" and value.shape != expected:
        side = math.isqrt(expected[1])
        result.resized[key] = (tuple(value.shape), tuple(expected))
        return interpolate_pos_embed(value, side, side)
    if key.endswith("relative_position_bias_table") and value.shape != expected and value.shape[1] == expected[1]:
        old_side = (math.isqrt(value.shape[0]) + 1) // 2
        new_side = (math.isqrt(expected[0]) + 1) // 2
        result.resized[key] = (tuple(value.shape), tuple(expected))
        return resize_relative_position_table(value, (old_side, old_side), (new_side, new_side))
    if key == "patch_embed1.proj.weight" and value.shape[1] != expected[1] and value.shape[0] == expected[0]:
        result.resized[key] = (tuple(value.shape), tuple(expected))
        return adapt_input_conv(expected[1], value)
    return value


def convert_mae_checkpoint(
    state_dict: dict, config: IVGFConfig, modality: str, prefix: str = "", check_origin: bool = True
) -> ConversionResult:
    """Convert an original InfMAE / MCMAE checkpoint (or ConvMAE segmentation backbone) to encoder weights.

    Args:
        state_dict: the loaded checkpoint (a wrapper dict with ``model`` / ``state_dict`` or the bare state dict).
        config: the target configuration; its ``modality`` encoder fields fix the expected shapes.
        modality: ``"visible"`` (MCMAE) or ``"infrared"`` (InfMAE).
        prefix: prepended to every output key (e.g. ``"ivgf.infrared_encoder."``).
        check_origin: refuse a checkpoint whose :func:`checkpoint_origin` is the other modality. The encoders
            are identical, so ``False`` deliberately loads e.g. MCMAE weights into the infrared encoder.

    Raises:
        CheckpointFormatError: neither format, unknown keys, shapes that do not match ``config``, NaN or infinite
            weights, or (with ``check_origin``) a checkpoint of the other modality.
    """
    state, head_keys = _unwrap(state_dict)
    source_format = _detect_format(state)
    origin_modality, origin = checkpoint_origin(state_dict)
    if check_origin and origin_modality not in (None, modality):
        raise CheckpointFormatError(
            f"this checkpoint is for the {origin_modality} encoder ({origin}), not the {modality} one; swap the "
            f"infrared / visible checkpoints, or convert it deliberately with check_origin=False (ivgf convert "
            "--ignore-origin)"
        )
    expected = build_encoder(config, modality, device="meta").state_dict()
    result = ConversionResult(state_dict={}, source_format=source_format, dropped_keys=list(head_keys), origin=origin)

    unknown, mismatched = [], []
    for key in sorted(state):
        if any(re.fullmatch(pattern, key) for pattern in _DROPPED_PATTERNS):
            result.dropped_keys.append(key)
            continue
        new_key = _rename(key)
        if new_key not in expected:
            unknown.append(key)
            continue
        value = _adapt(new_key, state[key], expected[new_key].shape, result)
        if value.shape != expected[new_key].shape:
            mismatched.append(f"{key}: checkpoint {tuple(state[key].shape)} vs model {tuple(expected[new_key].shape)}")
            continue
        result.state_dict[prefix + new_key] = value.to(expected[new_key].dtype).contiguous()
    if unknown:
        raise CheckpointFormatError(f"unknown checkpoint keys for the {modality} encoder: {unknown}")
    if mismatched:
        raise CheckpointFormatError(
            f"checkpoint shapes do not match the {modality} encoder of this config: " + "; ".join(mismatched)
        )
    _check_finite({key: state[key] for key in sorted(state) if key not in result.dropped_keys})
    result.missing_keys = sorted(prefix + key for key in expected if prefix + key not in result.state_dict)
    return result


_ORIGINAL_ARGUMENTS = (
    "img_size",
    "patch_size",
    "embed_dim",
    "depth",
    "num_heads",
    "mlp_ratio",
    "qkv_bias",
    "init_values",
    "use_rel_pos_bias",
    "drop_path_rate",
)


def _config_from_original(num_channels: int, layer_norm_eps: float, **original) -> IVGFConfig:
    """An IVGFConfig whose encoder fields reproduce the original constructor's arguments (base defaults)."""
    unknown = sorted(set(original) - set(_ORIGINAL_ARGUMENTS))
    if unknown:
        raise TypeError(f"unknown original encoder arguments {unknown}; accepted: {list(_ORIGINAL_ARGUMENTS)}")

    def as_list(value, length=3):
        return list(value) if isinstance(value, (list, tuple)) else [value] * length

    img_size = original.get("img_size", 224)
    fields = dict(
        pretrain_image_size=img_size[0] if isinstance(img_size, (list, tuple)) else img_size,
        patch_sizes=as_list(original.get("patch_size", (4, 2, 2))),
        hidden_sizes=as_list(original.get("embed_dim", (256, 384, 768))),
        depths=as_list(original.get("depth", (2, 2, 11))),
        num_attention_heads=original.get("num_heads", 12),
        mlp_ratios=as_list(original.get("mlp_ratio", 4.0)),
        qkv_bias=original.get("qkv_bias", True),
        layer_scale_init_value=original.get("init_values") or None,
        use_relative_position_bias=original.get("use_rel_pos_bias", False),
        drop_path_rate=original.get("drop_path_rate", 0.0),
    )
    return IVGFConfig(
        **fields,
        num_channels=num_channels,
        num_channels_ir=num_channels,
        layer_norm_eps=layer_norm_eps,
        modalities="visible",
        tem_layers=[],
        agf_num_heads=[1, 1, 1, 1],
    )


def load_original_encoder(
    state_dict: dict,
    *,
    modality: str,
    num_channels: int = 3,
    layer_norm_eps: Optional[float] = None,
    return_report: bool = False,
    **original_kwargs,
) -> Union[IVGFEncoder, tuple]:
    """Build one encoder from the original constructor's arguments and load an original checkpoint into it.

    Args:
        state_dict: an InfMAE / MCMAE pretraining checkpoint or a ConvMAE segmentation backbone state dict.
        modality: ``"visible"`` or ``"infrared"`` (names the encoder in messages).
        num_channels: input channels; 1 sums the RGB stem kernels (exact for replicated grey images).
        layer_norm_eps: epsilon of the transformer blocks' LayerNorms. `None` follows the original code of the
            checkpoint's format: 1e-6 for the pretraining encoders, 1e-5 for ConvMAE's segmentation wrapper (it
            builds its blocks with the default ``nn.LayerNorm``; measured against its outputs: 3e-5 apart otherwise).
        return_report: also return the :class:`ConversionResult`.
        **original_kwargs: ``img_size``, ``patch_size``, ``embed_dim``, ``depth``, ``num_heads``, ``mlp_ratio``,
            ``qkv_bias``, ``init_values``, ``use_rel_pos_bias``, ``drop_path_rate`` as the original code names them.

    Returns:
        The encoder in eval mode (``encoder(pixel_values).feature_maps`` is F1..F4); with ``return_report``, the
        tuple ``(encoder, result)``. Keys the checkpoint cannot hold keep their initial values: layer-scale =
        ``init_values``, relative position tables = 0, the F4 convolution and BatchNorm freshly initialised.
    """
    if modality not in ("visible", "infrared"):
        raise ValueError(f"modality must be 'visible' or 'infrared', got {modality!r}")
    if layer_norm_eps is None:
        source_format = _detect_format(_unwrap(state_dict)[0])
        layer_norm_eps = 1e-5 if source_format == "segmentation_backbone" else 1e-6
    config = _config_from_original(num_channels, layer_norm_eps, **original_kwargs)
    result = convert_mae_checkpoint(state_dict, config, "visible", check_origin=False)  # one stand-alone encoder
    encoder = build_encoder(config, "visible")
    encoder.apply(lambda module: init_encoder_weights(module, config.initializer_range))
    missing, unexpected = encoder.load_state_dict(result.state_dict, strict=False)
    if unexpected or not set(missing) <= set(result.missing_keys):
        raise RuntimeError(f"internal conversion error: missing {missing}, unexpected {unexpected}")
    encoder.eval()
    return (encoder, result) if return_report else encoder


def encoder_parameter_count(encoder: nn.Module, pretrained_only: bool = True) -> int:
    """Parameters of an encoder; ``pretrained_only`` counts just what the MAE checkpoints hold.

    That is patch embeddings 1-4 and blocks 1-3, without ``pos_embed``, layer-scale, relative position tables and
    the F4 projection (84,453,760 for the base encoder).
    """
    skipped = ("pos_embed", "layer_scale", "relative_position_bias_table", "stage4.")
    return sum(
        p.numel() for name, p in encoder.named_parameters() if not (pretrained_only and any(s in name for s in skipped))
    )


def load_foundation_weights(model, infrared_checkpoint=None, visible_checkpoint=None) -> dict:
    """Load converted InfMAE (infrared) / MCMAE (visible) checkpoints into an IVGF model's encoders.

    Args:
        model: any IVGF model (``IVGFModel`` or a task model holding it as ``model.ivgf``).
        infrared_checkpoint, visible_checkpoint: a path or an already loaded checkpoint dict; None skips it.

    Returns:
        ``{modality: ConversionResult}`` for the encoders that were loaded. Fusion modules and heads keep their
        initialisation; so do the encoder keys each result lists as missing.
    """
    base = getattr(model, "ivgf", model)
    results = {}
    for modality, checkpoint in (("infrared", infrared_checkpoint), ("visible", visible_checkpoint)):
        if checkpoint is None:
            continue
        encoder = getattr(base, f"{modality}_encoder", None)
        if encoder is None:
            raise ValueError(f"the model has no {modality} encoder (modalities={base.config.modalities!r})")
        if not isinstance(checkpoint, dict):
            checkpoint = load_checkpoint_file(checkpoint)
        result = convert_mae_checkpoint(checkpoint, base.config, modality)
        with torch.no_grad():
            encoder.load_state_dict(result.state_dict, strict=False)
        results[modality] = result
    return results


def save_original_encoder(encoder: nn.Module, path: Union[str, Path]) -> Path:
    """Write an IVGF encoder's weights as an original checkpoint (``{"model": state_dict}``, ``torch.save``).

    The keys are those of ConvMAE's segmentation backbone (``gamma_1``, ``fpn.0`` / ``fpn.1`` for the stride-32
    stage): the inverse of :func:`convert_mae_checkpoint`, so the file loads through ``visible_checkpoint`` /
    ``infrared_checkpoint`` exactly like a published InfMAE / MCMAE checkpoint. Refuses non-finite weights.
    """
    state = {}
    for key, value in encoder.state_dict().items():
        if not torch.isfinite(value).all():
            raise ValueError(f"encoder weight {key} has non-finite values; refusing to write {path}")
        for pattern, replacement in _ORIGINAL_NAMES:
            if pattern.match(key):
                key = pattern.sub(replacement, key)
                break
        state[key] = value.detach().cpu().clone()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state}, path)
    return path
