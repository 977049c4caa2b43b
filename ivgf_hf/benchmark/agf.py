"""The AGF memory case: peak memory of one attention-guided fusion pass, through ``scaled_dot_product_attention``
or a naive attention that writes out the N x N matrix."""

import time

import torch

from ..modeling.fusion_ivgf import IVGFAttentionGuidedFusion
from .measure import autocast, peak_memory_bytes, reset_peak_memory, synchronize


class NaiveAttentionFusion(IVGFAttentionGuidedFusion):
    """The AGF module with the attention matrix materialised: the reference for the memory comparison."""

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, height: int, width: int):
        scores = query @ key.transpose(-2, -1) * query.shape[-1] ** -0.5
        return scores.softmax(dim=-1) @ value


def naive_attention_estimate_bytes(tokens: int, batch: int, heads: int, pass_name: str, element_size: int = 4):
    """Rough peak of the naive attention in bytes: scores and probabilities of one direction (forward), or the
    saved probabilities of both directions plus the backward's temporaries (forward+backward)."""
    matrix = batch * heads * tokens * tokens * element_size
    return matrix * (2 if pass_name == "forward" else 5)


def measure_agf_case(case: dict) -> dict:
    """Peak memory of one AGF pass in this process. ``case``: implementation ("sdpa" | "naive"), pass ("forward"
    | "forward+backward"), size (image px), stride, channels, heads, batch, device, optional dtype ("fp32" |
    "bf16" autocast). Returns the case with ``peak_increase_bytes`` (over the memory in use before) and
    ``seconds``."""
    device = torch.device(case["device"])
    torch.manual_seed(0)
    cls = NaiveAttentionFusion if case["implementation"] == "naive" else IVGFAttentionGuidedFusion
    agf = cls(case["channels"], case["heads"]).to(device)
    with torch.no_grad():
        for param in agf.parameters():
            param.normal_(std=0.02)
    backward = case["pass"] == "forward+backward"

    def step(side: int):
        shape = (case["batch"], case["channels"], side, side)
        visible = torch.randn(shape, device=device, requires_grad=backward)
        infrared = torch.randn(shape, device=device, requires_grad=backward)
        with torch.set_grad_enabled(backward), autocast(case["device"], case.get("dtype", "fp32")):
            out = agf(visible, infrared)
        if backward:
            out.float().square().mean().backward()
        synchronize(device)

    step(8)  # warm-up: kernels, thread pools, allocator
    agf.zero_grad(set_to_none=True)
    memory = reset_peak_memory(device)
    start = time.perf_counter()
    step(case["size"] // case["stride"])
    seconds = time.perf_counter() - start
    increase = peak_memory_bytes(device) - (memory["before_bytes"] or 0)
    method = f"{memory['method']}, minus the memory in use before the pass"
    return {**case, "peak_increase_bytes": increase, "seconds": round(seconds, 3), "method": method}
