"""Subcommands of the ``ivgf`` command line: each module has ``register(subparsers)``.

Modules here import only the standard library (and the stdlib-only ``ivgf_hf.threads``) at import time; handlers
import their implementation when run.
"""

COMMAND_MODULES = ("convert", "train", "hub", "eval", "predict", "quickstart", "ablate", "benchmark", "export")
