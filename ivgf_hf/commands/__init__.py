"""Subcommands of the ``ivgf`` command line: each module has ``register(subparsers)``.

Modules here import only the standard library at import time; handlers import their implementation when run.
"""

COMMAND_MODULES = ("convert", "train", "hub", "eval", "predict", "quickstart", "ablate", "benchmark")
