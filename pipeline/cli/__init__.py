"""Command line of the pipeline (``python -m pipeline`` or ``camreid-pipeline``): argparse in :mod:`.app`,
the commands in :mod:`.commands`."""
from .app import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, build_parser, main, time_argument
from .commands import CliError

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_INTERRUPTED", "CliError", "build_parser", "main", "time_argument"]
