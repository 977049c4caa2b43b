"""The hybrid convolution + transformer encoder shared by InfMAE-B and MCMAE-B (ConvMAE-B).

Based on the public pretraining code of ConvMAE (Alpha-VL/ConvMAE, MIT) and InfMAE (liufangcen/InfMAE) and on
ConvMAE's mmsegmentation wrapper, re-implemented here with the same parameter names so that the original
checkpoints map one to one. Shapes use B = batch, C = channels, H x W = spatial size, N = H*W tokens.
"""

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer  # in 4.57.x and 5.x
from transformers.utils import ModelOutput

__all__ = [
    "IVGFEncoder",
    "IVGFEncoderOutput",
    "init_encoder_weights",
    "get_2d_sincos_pos_embed",
    "resize_relative_position_table",
    "IVGFPatchEmbed",
    "IVGFConvBlock",
    "IVGFTransformerBlock",
    "IVGFAttention",
    "IVGFLayerScale",
    "IVGFStage4Projection",
    "interpolate_pos_embed",
]


def interpolate_pos_embed(pos_embed: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize a square position table (1, N, C) to (1, height*width, C): bicubic, align_corners=False."""
    num_tokens, channels = pos_embed.shape[1], pos_embed.shape[2]
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f"position embedding with {num_tokens} tokens is not a square grid")
    if (side, side) == (height, width):
        return pos_embed
    grid = pos_embed.reshape(1, side, side, channels).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=(height, width), mode="bicubic", align_corners=False)
    return grid.to(pos_embed.dtype).permute(0, 2, 3, 1).reshape(1, height * width, channels)


class IVGFChannelsLastLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map, computed channels-last as the original code does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class IVGFPatchEmbed(GradientCheckpointingLayer):
    """Conv (kernel = stride = patch) -> channel LayerNorm -> GELU: (B, C_in, H, W) -> (B, C, H/p, W/p)."""

    def __init__(self, in_channels: int, out_channels: int, patch_size: int, eps: float, act: str):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, kernel_size=patch_size, stride=patch_size)
        self.norm = IVGFChannelsLastLayerNorm(out_channels, eps=eps)
        self.act = ACT2FN[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.proj(x)))


class IVGFConvMlp(nn.Module):
    """1x1 conv -> GELU -> 1x1 conv on (B, C, H, W)."""

    def __init__(self, dim: int, hidden: int, act: str):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = ACT2FN[act]
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class IVGFConvBlock(GradientCheckpointingLayer):
    """ConvMAE's ``CBlock``: x + DP(conv2(dw5x5(conv1(LN x)))), then x + DP(MLP(LN x)); shape-preserving."""

    def __init__(self, dim: int, mlp_ratio: float, drop_path: float, eps: float, act: str):
        super().__init__()
        self.norm1 = IVGFChannelsLastLayerNorm(dim, eps=eps)
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.attn = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv2 = nn.Conv2d(dim, dim, 1)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = IVGFChannelsLastLayerNorm(dim, eps=eps)
        self.mlp = IVGFConvMlp(dim, int(dim * mlp_ratio), act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.conv2(self.attn(self.conv1(self.norm1(x)))))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def relative_position_index(height: int, width: int, device=None) -> torch.Tensor:
    """BEiT relative position index (N, N) for an height x width grid, without class-token entries.

    Entry (i, j) is ``(r_i - r_j + height - 1) * (2 * width - 1) + (c_i - c_j + width - 1)`` for tokens i, j at rows
    r and columns c; it is computed as one broadcast difference of the per-token codes ``r * (2 * width - 1) + c``
    (built by broadcasting, not ``repeat_interleave``, which the ONNX exporter mistranslates for symbolic sizes).
    """
    rows = torch.arange(height, device=device)[:, None]
    cols = torch.arange(width, device=device)[None, :]
    code = (rows * (2 * width - 1) + cols).reshape(-1)
    return code[:, None] - code[None, :] + ((height - 1) * (2 * width - 1) + width - 1)


def resize_relative_position_table(table: torch.Tensor, old_grid: tuple, new_grid: tuple) -> torch.Tensor:
    """Resize a relative position table ((2h-1)*(2w-1), heads) from ``old_grid`` (h, w) to ``new_grid``: bilinear."""
    (h, w), (new_h, new_w) = old_grid, new_grid
    if (h, w) == (new_h, new_w):
        return table
    heads = table.shape[1]
    grid = table.T.reshape(1, heads, 2 * h - 1, 2 * w - 1)
    grid = F.interpolate(grid, size=(2 * new_h - 1, 2 * new_w - 1), mode="bilinear", align_corners=False)
    return grid.reshape(heads, -1).T


def get_2d_sincos_pos_embed(dim: int, height: int, width: int) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos table (1, height*width, dim), computed in float64 and returned as float32.

    The first half of the channels encodes the column (x), the second half the row (y); within each half the
    first quarter of ``dim`` is sin and the next is cos, with frequencies 10000^(-k / (dim/4)).
    """
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs a width divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    rows, cols = torch.meshgrid(
        torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
    )

    def encode(positions):
        angles = positions.reshape(-1, 1) * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(cols), encode(rows)], dim=1).float().unsqueeze(0)


class IVGFAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection, computed by ``scaled_dot_product_attention``.

    With ``grid_size`` set, the block owns a BEiT relative position table of shape ((2h-1)*(2w-1), heads) for that
    token grid; other grids interpolate the table bilinearly. Input and output: (B, N, C).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, grid_size: Optional[tuple] = None):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.grid_size = tuple(grid_size) if grid_size is not None else None
        if self.grid_size is not None:
            h, w = self.grid_size
            self.relative_position_bias_table = nn.Parameter(torch.empty((2 * h - 1) * (2 * w - 1), num_heads))

    def relative_position_bias(self, height: int, width: int, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """The additive attention bias (1, heads, N, N) for an height x width token grid, contiguous, in ``dtype``.

        The (small) table is cast before the gather, and gathered head-major so that the bias is written once, in
        the layout the attention kernel reads.
        """
        table = resize_relative_position_table(self.relative_position_bias_table, self.grid_size, (height, width))
        if dtype is not None:
            table = table.to(dtype)
        index = relative_position_index(height, width, device=table.device)
        tokens = height * width
        return table.t().index_select(1, index.reshape(-1)).view(1, -1, tokens, tokens)

    def forward(self, x: torch.Tensor, grid: tuple) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        bias = None
        if self.grid_size is not None:
            bias = self.relative_position_bias(*grid, dtype=qkv.dtype)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class IVGFLayerScale(nn.Module):
    """Per-channel scale ``gamma`` (the original ``gamma_1`` / ``gamma_2``); initialised to ``init_value``."""

    def __init__(self, dim: int, init_value: float):
        super().__init__()
        self.init_value = init_value
        self.gamma = nn.Parameter(torch.empty(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class IVGFMlp(nn.Module):
    """Linear -> GELU -> Linear on (B, N, C)."""

    def __init__(self, dim: int, hidden: int, act: str):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = ACT2FN[act]
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class IVGFTransformerBlock(GradientCheckpointingLayer):
    """Pre-norm ViT block with optional layer-scale and relative position bias: (B, N, C) -> (B, N, C)."""

    def __init__(self, dim, num_heads, mlp_ratio, qkv_bias, drop_path, eps, act, layer_scale, grid_size):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = IVGFAttention(dim, num_heads, qkv_bias, grid_size)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = IVGFMlp(dim, int(dim * mlp_ratio), act)
        self.layer_scale_1 = IVGFLayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.layer_scale_2 = IVGFLayerScale(dim, layer_scale) if layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor, grid: tuple) -> torch.Tensor:
        x = x + self.drop_path(self.layer_scale_1(self.attn(self.norm1(x), grid)))
        return x + self.drop_path(self.layer_scale_2(self.mlp(self.norm2(x))))


class IVGFStage4Projection(GradientCheckpointingLayer):
    """F4 from F3: 3x3 stride-2 conv without padding -> BatchNorm -> GELU (ConvMAE's ``fpn``).

    (B, C, H, W) -> (B, C, floor((H - 3) / 2) + 1, same for W): 15 x 15 for a 32 x 32 map.
    """

    def __init__(self, dim: int, act: str):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, kernel_size=3, stride=2)
        self.norm = nn.BatchNorm2d(dim)
        self.act = ACT2FN[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


@dataclass
class IVGFEncoderOutput(ModelOutput):
    """Output of one encoder.

    Args:
        feature_maps (`tuple[torch.FloatTensor]`): F1..F4, shapes (B, C1, H/4, W/4), (B, C2, H/8, W/8),
            (B, C3, H/16, W/16), (B, C3, floor((H/16 - 3)/2) + 1, same for W).
        hidden_states (`tuple[torch.FloatTensor]`, *optional*): transformer-stage tokens (B, N, C3): the
            embedded input, then the output of each block.
    """

    feature_maps: Optional[tuple] = None
    hidden_states: Optional[tuple] = None


class IVGFEncoder(nn.Module):
    """One modality's encoder. ``forward`` gives the four maps F1..F4 (strides 4, 8, 16, 32).

    The stage methods (:meth:`stage1`, :meth:`stage2`, :meth:`embed_tokens`, ``blocks3[j](tokens, grid)``,
    :meth:`tokens_to_map`, :meth:`stage4`) let the fused model run both encoders side by side and act between
    stages and between transformer blocks.

    Args:
        settings: the per-modality fields of [`IVGFConfig`] (``config.encoder_settings(modality)``).
        layer_norm_eps: epsilon of the transformer LayerNorms (1e-6).
        conv_layer_norm_eps: epsilon of the patch-embedding and convolution-block LayerNorms (1e-5).
        act: activation name (``"gelu"``).
    """

    def __init__(self, settings: dict, layer_norm_eps: float, conv_layer_norm_eps: float, act: str):
        super().__init__()
        dims, depths, ratios, patches = (
            settings["hidden_sizes"],
            settings["depths"],
            settings["mlp_ratios"],
            settings["patch_sizes"],
        )
        self.num_channels = settings["num_channels"]
        self.stride = patches[0] * patches[1] * patches[2]
        self.pretrain_grid = settings["pretrain_image_size"] // self.stride
        rates = torch.linspace(0, settings["drop_path_rate"], sum(depths), device="cpu").tolist()
        eps = conv_layer_norm_eps

        self.patch_embed1 = IVGFPatchEmbed(self.num_channels, dims[0], patches[0], eps, act)
        self.patch_embed2 = IVGFPatchEmbed(dims[0], dims[1], patches[1], eps, act)
        self.patch_embed3 = IVGFPatchEmbed(dims[1], dims[2], patches[2], eps, act)
        self.patch_embed4 = nn.Linear(dims[2], dims[2])
        self.blocks1 = nn.ModuleList([IVGFConvBlock(dims[0], ratios[0], rates[i], eps, act) for i in range(depths[0])])
        self.blocks2 = nn.ModuleList(
            [IVGFConvBlock(dims[1], ratios[1], rates[depths[0] + i], eps, act) for i in range(depths[1])]
        )
        grid = (self.pretrain_grid, self.pretrain_grid) if settings["use_relative_position_bias"] else None
        self.blocks3 = nn.ModuleList(
            [
                IVGFTransformerBlock(
                    dims[2],
                    settings["num_attention_heads"],
                    ratios[2],
                    settings["qkv_bias"],
                    rates[depths[0] + depths[1] + i],
                    layer_norm_eps,
                    act,
                    settings["layer_scale_init_value"],
                    grid,
                )
                for i in range(depths[2])
            ]
        )
        self.pos_embed = nn.Parameter(torch.zeros(1, self.pretrain_grid**2, dims[2]))
        self.stage4 = IVGFStage4Projection(dims[2], act)

    def check_pixel_values(self, pixel_values: torch.Tensor, name: str = "pixel_values"):
        """Raise a ValueError naming the problem if ``pixel_values`` cannot go through this encoder."""
        if pixel_values.ndim != 4:
            raise ValueError(f"{name} must be (batch, channels, height, width), got shape {tuple(pixel_values.shape)}")
        if pixel_values.shape[1] != self.num_channels:
            raise ValueError(
                f"{name} has {pixel_values.shape[1]} channels, this encoder expects {self.num_channels} "
                f"(shape {tuple(pixel_values.shape)})"
            )
        height, width = pixel_values.shape[-2:]
        if height % self.stride or width % self.stride:
            raise ValueError(
                f"{name} size {height}x{width} is not divisible by the encoder stride {self.stride}; "
                "resize or pad the images (IVGFImageProcessor pads to a multiple of 32)"
            )
        if height // self.stride < 3 or width // self.stride < 3:
            raise ValueError(f"{name} size {height}x{width} is too small: the stride-32 map needs at least 48x48")

    def stage1(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> F1 (B, C1, H/4, W/4)."""
        x = self.patch_embed1(pixel_values)
        for block in self.blocks1:
            x = block(x)
        return x

    def stage2(self, x: torch.Tensor) -> torch.Tensor:
        """F1 -> F2 (B, C2, H/8, W/8)."""
        x = self.patch_embed2(x)
        for block in self.blocks2:
            x = block(x)
        return x

    def embed_tokens(self, x: torch.Tensor) -> tuple:
        """F2 -> (tokens (B, N, C3) with the position embedding added, grid (h, w)); N = h*w, row-major."""
        x = self.patch_embed3(x)
        grid = tuple(x.shape[-2:])
        tokens = self.patch_embed4(x.flatten(2).transpose(1, 2))
        return tokens + interpolate_pos_embed(self.pos_embed, *grid), grid

    @staticmethod
    def tokens_to_map(tokens: torch.Tensor, grid: tuple) -> torch.Tensor:
        """(B, N, C) -> (B, C, h, w)."""
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: bool = False) -> IVGFEncoderOutput:
        """(B, C_in, H, W) -> F1..F4 and, on request, the transformer stage's per-block tokens."""
        self.check_pixel_values(pixel_values)
        f1 = self.stage1(pixel_values)
        f2 = self.stage2(f1)
        tokens, grid = self.embed_tokens(f2)
        hidden_states = [tokens] if output_hidden_states else None
        for block in self.blocks3:
            tokens = block(tokens, grid)
            if output_hidden_states:
                hidden_states.append(tokens)
        f3 = self.tokens_to_map(tokens, grid)
        f4 = self.stage4(f3)
        return IVGFEncoderOutput(
            feature_maps=(f1, f2, f3, f4), hidden_states=tuple(hidden_states) if output_hidden_states else None
        )


@torch.no_grad()
def init_encoder_weights(module: nn.Module, std: float) -> None:
    """Initialise the parameters that ``module`` directly owns (the rule every IVGF model uses).

    Linear / conv weights: truncated normal (std), biases 0; norms: weight 1, bias 0, running stats reset;
    layer-scale: its init value; relative position tables: 0 (as ConvMAE's segmentation wrapper); the absolute
    position embedding: MAE's fixed 2-D sin-cos table.
    """
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.trunc_normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d, nn.SyncBatchNorm)):
        if module.weight is not None:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        if getattr(module, "running_mean", None) is not None:
            module.running_mean.zero_()
            module.running_var.fill_(1.0)
            module.num_batches_tracked.zero_()
    elif isinstance(module, IVGFLayerScale):
        nn.init.constant_(module.gamma, module.init_value)
    elif isinstance(module, IVGFAttention) and module.grid_size is not None:
        nn.init.zeros_(module.relative_position_bias_table)
    elif isinstance(module, IVGFEncoder):
        side = math.isqrt(module.pos_embed.shape[1])
        module.pos_embed.copy_(get_2d_sincos_pos_embed(module.pos_embed.shape[2], side, side))
