"""Run a verb: config errors print on one or two lines and exit 2; tracebacks only with --debug.

A failure a rerun would repeat (a config problem, a diverged run) is also left for the launcher, whose
torchrun would otherwise turn it into a plain 1 (run/exit_codes.py).
"""

import sys
from collections.abc import Callable

from ..config import CONFIG_EXIT_CODE, ConfigError
from ..run.exit_codes import PermanentFailure, record_exit

INTERRUPTED_EXIT_CODE = 130
"""128 + SIGINT, as a shell reports a command stopped by Ctrl-C."""


def run_verb(body: Callable[[], int | None], debug: bool) -> int:
    """Call body(); turn ConfigError into `error: ...` lines on stderr and exit code 2."""
    try:
        return int(body() or 0)
    except ConfigError as err:
        if debug:
            raise
        for message in err.messages:
            print(f"error: {message}", file=sys.stderr)
        record_exit(CONFIG_EXIT_CODE, "\n".join(err.messages))
        return CONFIG_EXIT_CODE
    except PermanentFailure as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        record_exit(err.exit_code, str(err))
        return err.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted (Ctrl-C)", file=sys.stderr)
        return INTERRUPTED_EXIT_CODE


def wants_debug(argv: list[str]) -> bool:
    return "--debug" in argv
