"""The whole IVGF graph learns: a tiny segmentation model overfits one fixed batch."""

import pytest
import torch

from ivgf_hf import get_config
from ivgf_hf.modeling import IVGFForSemanticSegmentation


@pytest.mark.slow
def test_tiny_segmentation_model_overfits_one_batch():
    torch.manual_seed(0)
    model = IVGFForSemanticSegmentation(get_config("tiny", num_labels=4)).train()
    generator = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(2, 3, 64, 64, generator=generator)
    pixel_values_ir = torch.randn(2, 1, 64, 64, generator=generator)
    labels = torch.zeros(2, 64, 64, dtype=torch.long)
    labels[:, 16:48, 8:40] = 1  # a "person" seen in both images
    labels[0, 40:, 40:] = 2
    labels[1, :20, 30:] = 3
    labels[:, :2] = 255
    pixel_values_ir[:, :, 16:48, 8:40] += 2.0
    pixel_values[0, :, 40:, 40:] += 1.5
    pixel_values[1, :, :20, 30:] -= 1.5

    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, foreach=True)
    losses = []
    for _ in range(300):
        loss = model(pixel_values, pixel_values_ir, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if loss.item() <= 0.1 * losses[0]:
            break
    assert losses[-1] <= 0.1 * losses[0], (
        f"loss fell from {losses[0]:.3f} only to {losses[-1]:.3f} in {len(losses)} steps"
    )
