"""The ``ivgf`` command line: ``ivgf <command> --help`` describes each command."""

import argparse
import importlib
import sys

from .commands import COMMAND_MODULES

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ivgf", description="IVGF: fusion-guided infrared + visible models")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f".commands.{name}", __package__).register(commands)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
