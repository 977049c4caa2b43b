"""The ``ivgf`` command line: ``ivgf <command> --help`` describes each command."""

import argparse
import importlib
import sys

from .commands import COMMAND_MODULES
from .commands.errors import add_debug_flag, run_handler

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ivgf", description="IVGF: fusion-guided infrared + visible models")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f".commands.{name}", __package__).register(commands)
    add_debug_flag(parser, commands)
    return parser


def main(argv=None) -> int:
    """Run one command; expected failures print ``ivgf <command>: <message>`` and exit with status 2."""
    args = build_parser().parse_args(argv)
    if hasattr(args, "threads"):
        _apply_threads(args)
    return run_handler(args)


def _apply_threads(args) -> None:
    """Set torch's intra-op threads of a command with ``--threads`` (see ``ivgf_hf.threads``); an explicit
    count is also exported as ``IVGF_NUM_THREADS`` for the processes the command starts."""
    import os

    from .threads import ENV_VAR, configure_threads

    if args.threads is None and ENV_VAR not in os.environ:
        return  # torch's own default: the automatic policy changed the rounding of resumed runs (see #16)
    try:
        configure_threads(args.threads)
    except ValueError as error:
        raise SystemExit(f"ivgf {args.command}: {error}") from None
    if args.threads is not None:
        os.environ[ENV_VAR] = str(args.threads)


if __name__ == "__main__":
    sys.exit(main())
