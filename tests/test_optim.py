"""The recipe's AdamW implementation (adam_implementation: foreach / fused / auto)."""

import pytest
import torch

from ivgf_hf.training.optim import adam_kernel_flags, build_optimizer
from ivgf_hf.training.recipes import RecipeError, TrainingRecipe, get_recipe


def test_default_is_foreach_in_every_named_recipe():
    assert TrainingRecipe().adam_implementation == "foreach"
    assert get_recipe("synth-seg-cpu").adam_implementation == "foreach"


def test_unknown_implementation_is_refused_by_name():
    with pytest.raises(RecipeError, match="adam_implementation must be one of"):
        TrainingRecipe(adam_implementation="apex")
    with pytest.raises(ValueError, match="adam_implementation"):
        adam_kernel_flags("apex", torch.device("cpu"))


def test_string_override_is_accepted():
    recipe = get_recipe("synth-seg-cpu", adam_implementation="fused")
    assert recipe.adam_implementation == "fused"


@pytest.mark.parametrize(
    "implementation, device, expected",
    [
        ("foreach", "cpu", {"foreach": True}),
        ("fused", "cpu", {"fused": True}),
        ("auto", "cpu", {"foreach": True}),
        ("auto", "cuda", {"fused": True}),
        ("auto", "cuda:1", {"fused": True}),
    ],
)
def test_kernel_flags(implementation, device, expected):
    assert adam_kernel_flags(implementation, torch.device(device)) == expected


def _steps(implementation: str, device=None) -> tuple:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
    recipe = TrainingRecipe(learning_rate=1e-2, adam_implementation=implementation)
    optimizer = build_optimizer(model, recipe, device=device)
    inputs = torch.randn(16, 4)
    for _ in range(3):
        optimizer.zero_grad()
        model(inputs).square().mean().backward()
        optimizer.step()
    return optimizer, [p.detach().clone() for p in model.parameters()]


def test_fused_and_foreach_build_the_requested_adamw_and_agree_on_the_cpu():
    foreach, after_foreach = _steps("foreach")
    fused, after_fused = _steps("fused")
    assert all(group["foreach"] and not group["fused"] for group in foreach.param_groups)
    assert all(group["fused"] for group in fused.param_groups)
    for a, b in zip(after_foreach, after_fused):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_auto_follows_the_training_device_not_the_parameters():
    optimizer, _ = _steps("auto", device=torch.device("cpu"))
    assert all(group["foreach"] for group in optimizer.param_groups)
    model = torch.nn.Linear(2, 2)
    # The loop builds the optimizer before Accelerate moves the model: "auto" must read the target device.
    optimizer = build_optimizer(model, TrainingRecipe(adam_implementation="auto"), device=torch.device("cuda"))
    assert all(group["fused"] for group in optimizer.param_groups)
