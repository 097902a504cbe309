"""Run a verb: config errors print on one or two lines and exit 2; tracebacks only with --debug."""

import sys
from collections.abc import Callable

from ..config import CONFIG_EXIT_CODE, ConfigError


def run_verb(body: Callable[[], int | None], debug: bool) -> int:
    """Call body(); turn ConfigError into `error: ...` lines on stderr and exit code 2."""
    try:
        return int(body() or 0)
    except ConfigError as err:
        if debug:
            raise
        for message in err.messages:
            print(f"error: {message}", file=sys.stderr)
        return CONFIG_EXIT_CODE


def wants_debug(argv: list[str]) -> bool:
    return "--debug" in argv
