"""How ``ivgf`` reports failures.

An expected failure (bad input, a missing or unreadable file, a full disk, an invalid recipe) is printed as one
message ``ivgf <command>: <what is wrong>`` on stderr and exits with status 2; anything else keeps its traceback.
``--debug`` (or the environment variable ``IVGF_DEBUG=1``) shows the traceback of expected failures too.
"""

import argparse
import os
import sys
import traceback

__all__ = ["CommandFailed", "DEBUG_VARIABLE", "add_debug_flag", "run_handler"]

DEBUG_VARIABLE = "IVGF_DEBUG"
USAGE_STATUS = 2

# Expected failures raised by the library, as (module, class). They are looked up in ``sys.modules``: an exception
# can only be of a class whose module is loaded, so checking them imports nothing.
_EXPECTED = (
    ("ivgf_hf.prediction", "PredictInputError"),
    ("ivgf_hf.conversion", "CheckpointFormatError"),
    ("ivgf_hf.data.validation", "RGBTSampleError"),
    ("ivgf_hf.data.validation", "RGBTLayoutError"),
    ("ivgf_hf.training.recipes", "RecipeError"),
    ("safetensors", "SafetensorError"),
)


class CommandFailed(SystemExit):
    """An expected failure already reported on stderr: ``str()`` is the message, ``code`` the exit status (2)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.code = USAGE_STATUS


def add_debug_flag(parser: argparse.ArgumentParser, subparsers) -> None:
    """``--debug`` before or after the command name (``ivgf --debug train ...`` / ``ivgf train ... --debug``)."""
    text = f"show the Python traceback of a failure (also: {DEBUG_VARIABLE}=1)"
    parser.add_argument("--debug", action="store_true", help=text)
    for command in subparsers.choices.values():
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=text)


def _is_expected(error: BaseException) -> bool:
    if isinstance(error, SystemExit):  # the commands' own ``SystemExit("ivgf <command>: ...")``
        return isinstance(error.code, str)
    if isinstance(error, OSError):  # missing / unreadable / existing files, full disks, network
        return True
    expected = tuple(getattr(sys.modules[module], name) for module, name in _EXPECTED if module in sys.modules)
    return isinstance(error, expected)


def _message(command: str, error: BaseException) -> str:
    text = str(error.code if isinstance(error, SystemExit) else error).strip() or type(error).__name__
    return text if text.startswith(f"ivgf {command}:") else f"ivgf {command}: {text}"


def run_handler(args: argparse.Namespace) -> int:
    """Run ``args.handler(args)``; an expected failure is reported in one message and raises :class:`CommandFailed`."""
    debug = getattr(args, "debug", False) or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    try:
        return args.handler(args)
    except (Exception, SystemExit) as error:
        if debug and isinstance(error, SystemExit) and (error.__cause__ or error.__context__) is not None:
            # a command turned an exception into SystemExit (which Python prints without a traceback): show it
            traceback.print_exception(error.__cause__ or error.__context__, file=sys.stderr)
        if debug or isinstance(error, CommandFailed) or not _is_expected(error):
            raise
        message = _message(args.command, error)
        print(message, file=sys.stderr)
        raise CommandFailed(message) from None
