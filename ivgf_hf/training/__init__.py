"""Training: Accelerate loop, paper recipes, checkpoints and resume."""
