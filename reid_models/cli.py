"""The one command-line runner of ``reid_models`` (and, later, ``pipeline``): error -> exit code.

    sys.exit(run_cli(main, argv))

Exit codes: 0 success; 2 the user's input is wrong (bad config or option, missing dataset, foreign
checkpoint, corrupt image, unknown device ...: every ``ValueError`` such as ConfigError,
DatasetLayoutError, ImageReadError, DeviceError, CheckpointError, and missing/unreadable paths);
1 internal failure; 130 Ctrl-C. Each failure is one ``error: ...`` line on stderr; with the
environment variable ``CAMREID_TRACEBACK=1`` (or the older ``REID_TRACEBACK`` / ``PIPELINE_TRACEBACK``)
the full traceback is printed first. It imports no torch.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from .common import UserError, one_line

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "TRACEBACK_ENV", "ArgumentParser",
           "UserError", "command", "exit_code", "run_cli",
           "unwrap_worker_error"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
TRACEBACK_ENV = ("CAMREID_TRACEBACK", "REID_TRACEBACK", "PIPELINE_TRACEBACK")


#: Exceptions that mean "fix your input" (exit 2). ValueError covers every project input error class.
BAD_INPUT: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
                                              PermissionError)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line ``error: PROG: message (see PROG --help)`` and exit code 2."""

    def error(self, message: str):  # noqa: D401 - argparse hook
        self.exit(EXIT_BAD_INPUT, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def unwrap_worker_error(exc: BaseException) -> BaseException:
    """The original exception behind a DataLoader worker's re-raise.

    torch re-raises an exception from a worker process as the same type built from a message that
    holds the worker's whole traceback ("Caught ImageReadError in DataLoader worker process 0 ...
    Traceback ..."); its last line is ``ImageReadError: <original message>``. Returns an exception
    of the same type with only that message, or ``exc`` itself when it did not come from a worker.
    """
    text = str(exc.args[0]) if exc.args and isinstance(exc.args[0], str) else ""
    if not text.startswith("Caught ") or "DataLoader worker" not in text.split("\n", 1)[0]:
        return exc
    lines = [line for line in text.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    marker = f"{type(exc).__name__}: "  # the traceback's last line: "[module.]ImageReadError: message"
    head, sep, tail = last.partition(marker)
    message = tail if sep and " " not in head.strip() else last
    try:
        return type(exc)(message)
    except Exception:  # noqa: BLE001 - an exception type that needs other arguments: keep the re-raise
        return exc


def _traceback_wanted() -> bool:
    return any(os.environ.get(name, "") not in ("", "0") for name in TRACEBACK_ENV)


def exit_code(exc: BaseException, bad_input: tuple[type[BaseException], ...] = ()) -> int:
    """2 for the user's input (:data:`BAD_INPUT` and the caller's ``bad_input`` classes), 130 for Ctrl-C,
    1 for anything else."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_BAD_INPUT if isinstance(exc, BAD_INPUT + tuple(bad_input)) else EXIT_FAILED


def error_line(exc: BaseException, bad_input: tuple[type[BaseException], ...] = ()) -> str:
    """``error: <one line>``; internal failures also name the exception type and the traceback switch."""
    if isinstance(exc, KeyboardInterrupt):
        return "error: interrupted"
    if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
        text = one_line(exc.args[0])  # str(KeyError) adds quotes
    else:
        text = one_line(exc)
    if exit_code(exc, bad_input) == EXIT_BAD_INPUT:
        return f"error: {text}"
    return f"error: {type(exc).__name__}: {text} (set {TRACEBACK_ENV[0]}=1 for details)"


def run_cli(fn: Callable[[Sequence[str] | None], Any], argv: Sequence[str] | None = None,
            bad_input: tuple[type[BaseException], ...] = ()) -> int:
    """Run ``fn(argv)`` and return the process exit code (``fn``'s own int result, else 0).

    A raised exception becomes one ``error: ...`` line on stderr and its :func:`exit_code`
    (DataLoader worker re-raises are unwrapped first); ``SystemExit`` (argparse, --help) passes through.
    bad_input: the caller's own input-error classes that are not ValueErrors (exit 2 too).
    """
    try:
        result = fn(argv)
    except (Exception, KeyboardInterrupt) as raised:  # noqa: BLE001 - the one place errors become exit codes
        exc = unwrap_worker_error(raised)
        if _traceback_wanted():
            traceback.print_exception(raised)
        print(error_line(exc, bad_input), file=sys.stderr)
        return exit_code(exc, bad_input)
    return result if isinstance(result, int) and not isinstance(result, bool) else EXIT_OK


def command(get_args_parser: Callable[[], argparse.ArgumentParser],
            main: Callable[[argparse.Namespace], Any]) -> Callable[[Sequence[str] | None], int]:
    """``cli(argv=None) -> exit code`` of a command made of its parser factory and ``main(args)``."""
    def cli(argv: Sequence[str] | None = None) -> int:
        return run_cli(lambda args: main(get_args_parser().parse_args(args)), argv)

    cli.__doc__ = f"Command line of {main.__module__}: exit 0, 2 for bad input, 1 for an internal failure."
    return cli
