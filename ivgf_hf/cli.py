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
    return run_handler(args)


if __name__ == "__main__":
    sys.exit(main())
