"""Training: Accelerate loop, paper recipes, checkpoints and resume, and a transformers.Trainer recipe.

Names load on first use, so ``import ivgf_hf.training`` stays light (accelerate and transformers load with the
first function that needs them).
"""

import importlib

_EXPORTS = {
    "train": "loop",
    "TrainingResult": "loop",
    "TrainingRecipe": "recipes",
    "RecipeError": "recipes",
    "RECIPES": "recipes",
    "get_recipe": "recipes",
    "list_recipes": "recipes",
    "resolve_recipe": "recipes",
    "layer_decay_parameter_groups": "optim",
    "PolynomialWarmupSchedule": "optim",
    "build_optimizer": "optim",
    "build_scheduler": "optim",
    "IVGFTrainer": "trainer_recipe",
    "build_trainer": "trainer_recipe",
    "trainer_arguments": "trainer_recipe",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
