"""The IVGF fusion modules (paper section III-B to III-D): feature enhancement (FEM, eq. 1-13), token enhancement
(TEM, eq. 14-17) and attention-guided fusion (AGF, eq. 18-20), plus the summation baseline.

The paper writes x = infrared and y = visible; every module here takes and returns ``(visible, infrared)`` in that
order. Shapes use B = batch, C = channels, H x W = spatial size, N = H*W tokens.

Weights are allocated here and initialised by the model's ``_init_weights``: standard Linear / Conv / LayerNorm
modules follow the model's default rule, and the parameters with a special initial value live in leaf modules
(:class:`IVGFPromptLogitBias`, :class:`IVGFChannelScale`) handled by :func:`init_fusion_weights`.

Trainable starts (docs/model.md, "Deviations from the paper, and why"): each module can start as the identity or as
the sum baseline while keeping the paper's learned computation. FEM's added terms and AGF's merged output can be
scaled per channel by :class:`IVGFChannelScale` starting at 0, AGF can keep the summed inputs as a residual path
and normalise the tokens that enter its projections, and TEM's prompts can range over (0, 2) starting at 1.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from .configuration_ivgf import FEM_MODES, TEM_INITIAL_PROMPT

__all__ = [
    "IVGFFeatureEnhancement",
    "IVGFTokenEnhancement",
    "IVGFAttentionGuidedFusion",
    "IVGFSumFusion",
    "IVGFSpatialWeight",
    "IVGFChannelWeight",
    "IVGFPromptLogitBias",
    "IVGFChannelScale",
    "IVGFMergeBlock",
    "FEM_MODES",
    "TEM_INITIAL_PROMPT",
    "init_fusion_weights",
]


def _check_pair(visible: torch.Tensor, infrared: torch.Tensor, ndim: int, channels: int, layout: str):
    """Raise a ValueError naming the problem unless both tensors are ``ndim``-d, equal-shaped, with ``channels``."""
    for name, tensor in (("visible", visible), ("infrared", infrared)):
        if tensor.ndim != ndim:
            raise ValueError(f"{name} must be {layout}, got shape {tuple(tensor.shape)}")
    if visible.shape != infrared.shape:
        raise ValueError(
            f"visible and infrared must have the same shape, got {tuple(visible.shape)} and {tuple(infrared.shape)}"
        )
    channel_dim = 1 if ndim == 4 else -1
    if visible.shape[channel_dim] != channels:
        raise ValueError(f"expected {channels} channels in {layout}, got shape {tuple(visible.shape)}")


# Fan-based initialisation (``fan_init=True``), set per layer and applied by :func:`init_fusion_weights`: the
# default rule's std of ``initializer_range`` (0.02) suits 768-wide layers, but leaves narrower fusion layers with
# near-constant gates and uniform attention, and a three-conv merge whose output is ~1e-5 of its input.
_FAN_INIT = "_ivgf_fan_init"


def _fan_init(layer: nn.Module, rule: str) -> nn.Module:
    """Mark ``layer`` (Linear / Conv2d) for fan-based init: ``"relu"`` (He, before a ReLU) or ``"linear"`` (Xavier)."""
    setattr(layer, _FAN_INIT, rule)
    return layer


def _reduced(channels: int, reduction: int, name: str) -> int:
    """Width of a bottleneck ``channels // reduction`` (at least 1)."""
    if channels < 1:
        raise ValueError(f"channels must be positive, got {channels}")
    if reduction < 1:
        raise ValueError(f"{name} must be a positive integer, got {reduction}")
    return max(1, channels // reduction)


class IVGFSpatialWeight(nn.Module):
    """Spatial weights of one modality (eq. 1-2): sigmoid(conv1x1(relu(conv1x1(F)))), C -> C/r -> 1.

    (B, C, H, W) -> (B, 1, H, W) in (0, 1).
    """

    def __init__(self, channels: int, reduction: int, fan_init: bool = False):
        super().__init__()
        hidden = _reduced(channels, reduction, "spatial_reduction")
        self.conv1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(hidden, 1, kernel_size=1)
        if fan_init:
            _fan_init(self.conv1, "relu")
            _fan_init(self.conv2, "linear")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv2(self.act(self.conv1(x))))


class IVGFChannelWeight(nn.Module):
    """Channel attention of one modality (eq. 7-9): the adaptive average- and max-pooled vectors are concatenated
    (2C) and passed through linear (2C -> C/r) -> ReLU -> linear (C/r -> C) -> sigmoid.

    (B, C, H, W) -> (B, C, 1, 1) in (0, 1).
    """

    def __init__(self, channels: int, reduction: int, fan_init: bool = False):
        super().__init__()
        hidden = _reduced(channels, reduction, "channel_reduction")
        self.fc1 = nn.Linear(2 * channels, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, channels)
        if fan_init:
            _fan_init(self.fc1, "relu")
            _fan_init(self.fc2, "linear")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        return torch.sigmoid(self.fc2(self.act(self.fc1(pooled))))[:, :, None, None]


class IVGFFeatureEnhancement(GradientCheckpointingLayer):
    """Feature-enhancement module (FEM, eq. 1-13) on one scale's maps; each modality has its own weights.

    With W_s the spatial weights (:class:`IVGFSpatialWeight`) and W_c the channel weights
    (:class:`IVGFChannelWeight`) of a modality, the modes give, for the visible output (the infrared output swaps
    the roles of the two modalities):

    - ``"parallel"`` (the paper, eq. 12): ``vis + ir * W_s(ir) + vis * W_c(vis)``;
    - ``"serial"``: spatial integration first, then channel attention on its result,
      ``S = vis + ir * W_s(ir)``, output ``S + S * W_c(S)``;
    - ``"channel"`` (channel attention only, the residual form of eq. 12 without the cross term):
      ``vis + vis * W_c(vis)``; it never reads the other modality;
    - ``"spatial"`` (spatial integration only, eq. 5): ``vis + ir * W_s(ir)``.

    With ``scaled_residual=True`` every added term (the gated cross term and the channel-attention term) is
    multiplied by its own per-channel :class:`IVGFChannelScale` that starts at 0, so the module starts as the
    identity and learns how much of each term to add; ``False`` is eq. 12 as written, whose sigmoid gates start
    near 0.5 (the output then starts near ``1.5 vis + 0.5 ir``). ``fan_init=True`` initialises the gate layers by
    their fan (He before a ReLU, Xavier before the sigmoid) instead of the model's std-0.02 rule, so the gates vary
    over pixels and channels from the start.

    Only the branches a mode uses are allocated. Input and output: two (B, C, H, W) maps.
    """

    def __init__(
        self,
        channels: int,
        spatial_reduction: int,
        channel_reduction: int,
        mode: str,
        scaled_residual: bool = False,
        fan_init: bool = False,
    ):
        super().__init__()
        if mode not in FEM_MODES:
            raise ValueError(f"mode must be one of {FEM_MODES}, got {mode!r}")
        self.channels = channels
        self.mode = mode
        self.scaled_residual = scaled_residual
        branches = []
        if mode != "channel":
            self.spatial_visible = IVGFSpatialWeight(channels, spatial_reduction, fan_init)
            self.spatial_infrared = IVGFSpatialWeight(channels, spatial_reduction, fan_init)
            branches += ["spatial_visible", "spatial_infrared"]
        if mode != "spatial":
            self.channel_visible = IVGFChannelWeight(channels, channel_reduction, fan_init)
            self.channel_infrared = IVGFChannelWeight(channels, channel_reduction, fan_init)
            branches += ["channel_visible", "channel_infrared"]
        if scaled_residual:
            self.scales = nn.ModuleDict({name: IVGFChannelScale(channels, 0.0) for name in branches})

    def _term(self, branch: str, term: torch.Tensor) -> torch.Tensor:
        """An added term of eq. 5-6 / 12-13, scaled per channel when ``scaled_residual``."""
        return self.scales[branch](term) if self.scaled_residual else term

    def forward(self, visible: torch.Tensor, infrared: torch.Tensor) -> tuple:
        _check_pair(visible, infrared, 4, self.channels, "(batch, channels, height, width)")
        if self.mode == "channel":
            return (
                visible + self._term("channel_visible", visible * self.channel_visible(visible)),
                infrared + self._term("channel_infrared", infrared * self.channel_infrared(infrared)),
            )
        # Cross-modality spatial integration (eq. 3-6): each output receives the other modality's gated features.
        visible_spatial = visible + self._term("spatial_infrared", infrared * self.spatial_infrared(infrared))
        infrared_spatial = infrared + self._term("spatial_visible", visible * self.spatial_visible(visible))
        if self.mode == "spatial":
            return visible_spatial, infrared_spatial
        if self.mode == "serial":
            return (
                visible_spatial
                + self._term("channel_visible", visible_spatial * self.channel_visible(visible_spatial)),
                infrared_spatial
                + self._term("channel_infrared", infrared_spatial * self.channel_infrared(infrared_spatial)),
            )
        return (
            visible_spatial + self._term("channel_visible", visible * self.channel_visible(visible)),
            infrared_spatial + self._term("channel_infrared", infrared * self.channel_infrared(infrared)),
        )


class IVGFPromptLogitBias(nn.Module):
    """Learnable offset added to the pooled prompt logits (one per modality), initialised to logit(initial_prompt).

    (..., num_prompts) -> (..., num_prompts).
    """

    def __init__(self, num_prompts: int, initial_prompt: float):
        super().__init__()
        if not 0.0 < initial_prompt < 1.0:
            raise ValueError(f"initial_prompt must lie in (0, 1), got {initial_prompt}")
        self.initial_logit = math.log(initial_prompt / (1.0 - initial_prompt))
        self.bias = nn.Parameter(torch.empty(num_prompts))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits + self.bias


class IVGFChannelScale(nn.Module):
    """A learnable per-channel factor (layer-scale), initialised to ``init_value``; 0 makes its branch start off.

    (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, init_value: float):
        super().__init__()
        self.init_value = float(init_value)
        self.gamma = nn.Parameter(torch.empty(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma[:, None, None]


class IVGFTokenEnhancement(GradientCheckpointingLayer):
    """Token-enhancement module (TEM, eq. 14-17) on the transformer stage's tokens.

    ``Phi = Linear(LayerNorm(cat(visible, infrared)))`` (2C -> hidden_size, eq. 14). A mixture of ``num_adapters``
    bottleneck adapters (hidden -> bottleneck -> GELU -> hidden), mixed per token by a dense softmax router over
    ``Linear(Phi)`` (TC-MoA style, without top-k sparsity or noise), adds a residual: ``features = Phi + MoA(Phi)``.
    Adaptive average pooling of the feature dimension to 2 channels, plus a learnable per-modality logit offset,
    then a sigmoid give the importance prompts (B, N, 1) of the visible (channel 0) and infrared (channel 1)
    tokens (eq. 15); each modality's tokens are multiplied by their prompt (eq. 16-17). Tokens never mix: the
    output for token i depends only on token i of both inputs.

    The adapters are computed together: the down projections of all adapters form one Linear (hidden -> K *
    bottleneck), and the up projections one Linear (K * bottleneck -> hidden) applied to the router-weighted
    activations, which equals the router-weighted sum of the adapters' outputs. The adapters share the output bias
    (the router weights sum to 1, so per-adapter biases would only add a router-weighted bias).

    ``prompt_range`` r scales the sigmoid, so prompts lie in (0, r): r = 1 is eq. 15 as written. The logit offset
    starts at logit(``initial_prompt`` / r), and the pooled features of default-initialised layers (weights of std
    ``initializer_range``) are small next to it, so every prompt starts close to ``initial_prompt``. With the
    paper's range (r = 1) the default start is ``TEM_INITIAL_PROMPT`` = 0.98, where the sigmoid's slope is only
    0.02; with r = 2 and a start of 1 the tokens pass unchanged at step 0 and the slope is 0.5.

    Input and output: two (B, N, C) token tensors.
    """

    def __init__(
        self,
        dim: int,
        hidden_size: int,
        num_adapters: int,
        bottleneck: int,
        eps: float,
        prompt_range: float = 1.0,
        initial_prompt: float = TEM_INITIAL_PROMPT,
    ):
        super().__init__()
        sizes = {"dim": dim, "num_adapters": num_adapters, "bottleneck": bottleneck}
        for name, value in sizes.items():
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if hidden_size < 2:
            raise ValueError(f"hidden_size must be at least 2 (it is pooled to two prompts), got {hidden_size}")
        if not prompt_range > 0:
            raise ValueError(f"prompt_range must be positive, got {prompt_range}")
        if not 0.0 < initial_prompt < prompt_range:
            raise ValueError(f"initial_prompt must lie in (0, prompt_range={prompt_range}), got {initial_prompt}")
        self.dim = dim
        self.prompt_range = float(prompt_range)
        self.num_adapters = num_adapters
        self.bottleneck = bottleneck
        self.norm = nn.LayerNorm(2 * dim, eps=eps)
        self.reduction = nn.Linear(2 * dim, hidden_size)
        self.router = nn.Linear(hidden_size, num_adapters)
        self.adapters_down = nn.Linear(hidden_size, num_adapters * bottleneck)
        self.act = nn.GELU()
        self.adapters_up = nn.Linear(num_adapters * bottleneck, hidden_size)
        self.prompt_bias = IVGFPromptLogitBias(2, initial_prompt / prompt_range)

    def prompts(self, visible_tokens: torch.Tensor, infrared_tokens: torch.Tensor) -> torch.Tensor:
        """The importance prompts (B, N, 2) in (0, prompt_range): channel 0 visible, channel 1 infrared."""
        phi = self.reduction(self.norm(torch.cat([visible_tokens, infrared_tokens], dim=-1)))
        gates = torch.softmax(self.router(phi), dim=-1)
        hidden = self.act(self.adapters_down(phi)).unflatten(-1, (self.num_adapters, self.bottleneck))
        features = phi + self.adapters_up((hidden * gates.unsqueeze(-1)).flatten(-2))
        prompts = torch.sigmoid(self.prompt_bias(F.adaptive_avg_pool1d(features, 2)))
        return prompts if self.prompt_range == 1.0 else prompts * self.prompt_range

    def forward(self, visible_tokens: torch.Tensor, infrared_tokens: torch.Tensor) -> tuple:
        _check_pair(visible_tokens, infrared_tokens, 3, self.dim, "(batch, tokens, channels)")
        prompts = self.prompts(visible_tokens, infrared_tokens)
        return visible_tokens * prompts[..., 0:1], infrared_tokens * prompts[..., 1:2]


class IVGFMergeBlock(nn.Module):
    """Merge module M of eq. 20: 1x1 conv (2C -> C) -> 3x3 conv (C -> C) -> ReLU -> 1x1 conv (C -> C).

    (B, 2C, H, W) -> (B, C, H, W).
    """

    def __init__(self, in_channels: int, channels: int, fan_init: bool = False):
        super().__init__()
        self.reduce = nn.Conv2d(in_channels, channels, kernel_size=1)
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.act = nn.ReLU()
        self.proj = nn.Conv2d(channels, channels, kernel_size=1)
        if fan_init:
            _fan_init(self.reduce, "linear")
            _fan_init(self.conv, "relu")
            _fan_init(self.proj, "linear")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.act(self.conv(self.reduce(x))))


class IVGFAttentionGuidedFusion(GradientCheckpointingLayer):
    """Attention-guided fusion (AGF, eq. 18-20): multi-head cross-attention both ways, then the merge module.

    Each modality has a query projection (C -> C) and a fused key/value projection (C -> 2C). Visible queries
    attend to infrared keys/values and infrared queries to visible keys/values, through
    ``scaled_dot_product_attention`` (scale 1/sqrt(C / num_heads)), so the N x N attention matrix is never
    materialised and memory grows linearly with the number of tokens. The two results are concatenated
    (visible-query result first) into a (B, 2C, H, W) map and merged by :class:`IVGFMergeBlock`. There is no
    separate output projection: the merge's first 1x1 convolution plays that role.

    ``kv_stride > 1`` average-pools the maps that give keys and values by that stride (ceil mode, partial windows
    averaged over their valid pixels) before the projection, for very large inputs; 1 is exact attention. Pooling
    before the projection equals pooling the projected keys/values (both are linear), and the parameters are the
    same for every stride.

    These choices make the module trainable from random weights (docs/model.md, "Deviations from the paper"):

    - ``residual=True``: the output is ``visible + infrared + gamma * M(...)``, with a per-channel
      :class:`IVGFChannelScale` gamma starting at 0, so AGF starts as the sum baseline and learns what to add;
      ``False`` is eq. 20 as written, ``M(...)`` alone.
    - ``norm=True``: each modality's tokens pass a LayerNorm before the query / key / value projections (pre-norm,
      as in transformer blocks), so the attention logits do not depend on the encoders' feature scale.
    - ``neighbourhood=k`` (odd): each query attends to the k x k tokens of the other modality around its own
      position instead of the whole map (0, eq. 18-19 as written). The flattened tokens carry no position, and
      trained globally the attention ignored where the query is (docs/model.md).
    - ``merge_norm=True`` (with ``residual``): ``M(...)`` is normalised over (C, H, W) per image (GroupNorm, one
      group, no affine) before gamma. Trained without it, M's output grew to 9-27x the RMS of ``F_vis + F_ir`` while
      gamma stayed near 0.02, so every Adam step on gamma moved the fused map by ~lr x 20.
    - ``fan_init=True``: the projections (Xavier) and the merge convolutions (He before the ReLU, Xavier elsewhere)
      are initialised by their fan instead of std 0.02, so the attention is not uniform and the merge's output is of
      the size of its input at step 0.

    Inputs: two (B, C, H, W) maps; output (B, C, H, W), channels-last in memory (the token layout is reshaped to a
    map without a copy; values do not depend on the input's memory format).
    """

    def __init__(
        self,
        channels: int,
        num_heads: int,
        kv_stride: int = 1,
        residual: bool = False,
        norm: bool = False,
        eps: float = 1e-6,
        fan_init: bool = False,
        neighbourhood: int = 0,
        merge_norm: bool = False,
    ):
        super().__init__()
        if neighbourhood < 0 or (neighbourhood and neighbourhood % 2 == 0):
            raise ValueError(f"neighbourhood must be 0 (global attention) or an odd positive size, got {neighbourhood}")
        if neighbourhood and kv_stride != 1:
            raise ValueError(f"neighbourhood attention needs kv_stride=1, got kv_stride={kv_stride}")
        if channels < 1 or num_heads < 1 or channels % num_heads:
            raise ValueError(f"channels ({channels}) must be a positive multiple of num_heads ({num_heads})")
        if kv_stride < 1:
            raise ValueError(f"kv_stride must be a positive integer, got {kv_stride}")
        self.channels = channels
        self.num_heads = num_heads
        self.head_dim = channels // num_heads
        self.kv_stride = kv_stride
        self.neighbourhood = neighbourhood
        self.residual = residual
        self.norm = norm
        if norm:
            self.visible_norm = nn.LayerNorm(channels, eps=eps)
            self.infrared_norm = nn.LayerNorm(channels, eps=eps)
        self.visible_query = nn.Linear(channels, channels)
        self.visible_key_value = nn.Linear(channels, 2 * channels)
        self.infrared_query = nn.Linear(channels, channels)
        self.infrared_key_value = nn.Linear(channels, 2 * channels)
        self.merge = IVGFMergeBlock(2 * channels, channels, fan_init)
        if fan_init:
            for projection in (
                self.visible_query,
                self.visible_key_value,
                self.infrared_query,
                self.infrared_key_value,
            ):
                _fan_init(projection, "linear")
        if residual:
            self.merge_scale = IVGFChannelScale(channels, 0.0)
        self.merge_norm = nn.GroupNorm(1, channels, eps=eps, affine=False) if merge_norm and residual else None

    @staticmethod
    def to_tokens(feature_map: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, H*W, C), row-major; a view for channels-last input."""
        batch, channels = feature_map.shape[:2]
        return feature_map.permute(0, 2, 3, 1).reshape(batch, -1, channels)

    def split_heads(self, x: torch.Tensor, parts: int) -> tuple:
        """(B, N, parts*C) -> ``parts`` views of shape (B, heads, N, head_dim)."""
        x = x.unflatten(-1, (parts, self.num_heads, self.head_dim))
        return tuple(part.transpose(1, 2) for part in x.unbind(2))

    def key_value_tokens(self, feature_map: torch.Tensor, tokens: torch.Tensor, norm) -> torch.Tensor:
        """The tokens that give keys and values: ``tokens`` itself, or the pooled map's tokens (normalised by
        ``norm`` if given) if kv_stride > 1."""
        if self.kv_stride == 1:
            return tokens
        pooled = self.to_tokens(F.avg_pool2d(feature_map, self.kv_stride, stride=self.kv_stride, ceil_mode=True))
        return pooled if norm is None else norm(pooled)

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, height: int, width: int):
        """Multi-head attention (B, heads, N, d) x (B, heads, M, d) -> (B, heads, N, d), memory linear in N, M.

        Global attention (``neighbourhood`` 0) runs through ``scaled_dot_product_attention``. With ``neighbourhood``
        k, the query at row y, column x of the height x width grid attends only to the k x k keys centred on
        (y, x), keys beyond the border masked out: (B, heads, N, k^2) logits, never N x N. (SDPA has no
        neighbourhood kernel; giving it k^2 stacked copies of K and V measured 3.4x slower than the loop below.)"""
        if not self.neighbourhood:
            return F.scaled_dot_product_attention(query, key, value)
        if torch.compiler.is_exporting() or torch.jit.is_tracing():
            return self._attend_neighbourhood_unfolded(query, key, value, height, width)
        return self._attend_neighbourhood_shifted(query, key, value, height, width)

    def _neighbourhood_mask(self, like: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(N, k^2) bool: which of the k x k offsets (row-major) of each position lie inside the map."""
        size = self.neighbourhood
        ones = like.new_ones(1, 1, height, width)
        return F.unfold(ones, size, padding=size // 2).view(size * size, height * width).transpose(0, 1) > 0

    def _attend_neighbourhood_shifted(self, query, key, value, height: int, width: int) -> torch.Tensor:
        """Neighbourhood attention as a loop over the k^2 offsets (never over tokens) on shifted views of the padded
        keys and values: no copy of K or V; 1.15x the time of global attention at 1,024 tokens (eager)."""
        size, radius = self.neighbourhood, self.neighbourhood // 2
        offsets = [(dy, dx) for dy in range(size) for dx in range(size)]

        def padded_grid(x: torch.Tensor) -> torch.Tensor:
            """(..., N, d) -> (..., height + 2r, width + 2r, d), zeros around the map."""
            return F.pad(x.unflatten(-2, (height, width)), (0, 0, radius, radius, radius, radius))

        keys, values = padded_grid(key), padded_grid(value)
        queries = query.unflatten(-2, (height, width)) * query.shape[-1] ** -0.5
        logits = torch.stack(
            [(queries * keys[..., dy : dy + height, dx : dx + width, :]).sum(-1) for dy, dx in offsets], dim=-1
        ).flatten(-3, -2)  # (B, heads, N, k^2)
        weights = logits.masked_fill(~self._neighbourhood_mask(query, height, width), float("-inf")).softmax(-1)
        weights = weights.unflatten(-2, (height, width))
        attended = sum(
            weights[..., index : index + 1] * values[..., dy : dy + height, dx : dx + width, :]
            for index, (dy, dx) in enumerate(offsets)
        )
        return attended.flatten(-3, -2)

    def _attend_neighbourhood_unfolded(self, query, key, value, height: int, width: int) -> torch.Tensor:
        """The same attention with each token's k x k keys and values gathered by ``unfold`` ((B, heads, N, k^2, d)
        copies): slower in eager mode, but a small graph for ``torch.export`` / ONNX (the loop's 2 k^2 slices
        per direction took 20x longer to export)."""
        batch, heads, tokens, head_dim = query.shape
        size = self.neighbourhood

        def gathered(x: torch.Tensor) -> torch.Tensor:
            grid = x.transpose(-1, -2).reshape(batch, heads * head_dim, height, width)
            columns = F.unfold(grid, size, padding=size // 2)  # (B, heads * d * k^2, N)
            return columns.view(batch, heads, head_dim, size * size, tokens).permute(0, 1, 4, 3, 2)

        logits = (query.unsqueeze(-2) * gathered(key)).sum(-1) * head_dim**-0.5
        weights = logits.masked_fill(~self._neighbourhood_mask(query, height, width), float("-inf")).softmax(-1)
        return (weights.unsqueeze(-1) * gathered(value)).sum(-2)

    def forward(self, visible: torch.Tensor, infrared: torch.Tensor) -> torch.Tensor:
        _check_pair(visible, infrared, 4, self.channels, "(batch, channels, height, width)")
        batch, _, height, width = visible.shape
        visible_norm = self.visible_norm if self.norm else None
        infrared_norm = self.infrared_norm if self.norm else None
        visible_tokens, infrared_tokens = self.to_tokens(visible), self.to_tokens(infrared)
        if self.norm:
            visible_tokens, infrared_tokens = visible_norm(visible_tokens), infrared_norm(infrared_tokens)
        (visible_query,) = self.split_heads(self.visible_query(visible_tokens), 1)
        (infrared_query,) = self.split_heads(self.infrared_query(infrared_tokens), 1)
        visible_key, visible_value = self.split_heads(
            self.visible_key_value(self.key_value_tokens(visible, visible_tokens, visible_norm)), 2
        )
        infrared_key, infrared_value = self.split_heads(
            self.infrared_key_value(self.key_value_tokens(infrared, infrared_tokens, infrared_norm)), 2
        )
        visible_attended = self.attend(visible_query, infrared_key, infrared_value, height, width)  # eq. 19
        infrared_attended = self.attend(infrared_query, visible_key, visible_value, height, width)  # eq. 18
        # (B, heads, N, d) x 2 -> (B, N, 2*heads, d): one copy, after which the map is a free view.
        fused = torch.cat([visible_attended.transpose(1, 2), infrared_attended.transpose(1, 2)], dim=2)
        fused_map = fused.reshape(batch, height, width, 2 * self.channels).permute(0, 3, 1, 2)
        merged = self.merge(fused_map)
        if not self.residual:
            return merged
        if self.merge_norm is not None:
            merged = self.merge_norm(merged)
        return visible + infrared + self.merge_scale(merged)


class IVGFSumFusion(nn.Module):
    """The paper's baseline fusion when AGF is off: visible + infrared, any equal shapes."""

    def forward(self, visible: torch.Tensor, infrared: torch.Tensor) -> torch.Tensor:
        if visible.shape != infrared.shape:
            raise ValueError(
                f"visible and infrared must have the same shape, got {tuple(visible.shape)} and {tuple(infrared.shape)}"
            )
        return visible + infrared


@torch.no_grad()
def init_fusion_weights(module: nn.Module, std: float) -> bool:
    """Initialise ``module`` if it is one of this file's leaf modules with a non-default init; True if handled.

    Layers marked for fan-based init (``fan_init=True`` in FEM and AGF) get He-normal (fan in, before a ReLU) or
    Xavier-uniform weights and zero biases. The model's ``_init_weights`` calls this first and applies its default
    rule (Linear / Conv weights truncated normal of std ``initializer_range``, biases 0, LayerNorm 1 / 0) when it
    returns False. ``std`` is that ``initializer_range``; the modules here do not use it.
    """
    if isinstance(module, IVGFPromptLogitBias):
        nn.init.constant_(module.bias, module.initial_logit)
        return True
    if isinstance(module, IVGFChannelScale):
        nn.init.constant_(module.gamma, module.init_value)
        return True
    rule = getattr(module, _FAN_INIT, None)
    if rule is not None:
        if rule == "relu":
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        else:
            nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
        return True
    return False
