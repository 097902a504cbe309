"""What the exit code of a primus-bridge command tells a scheduler: the one home of the codes.

  0    done (or nothing left to do)
  1    an unexpected error (a traceback); `plan`: the run does not fit
  2    a configuration or input problem (CONFIG_EXIT_CODE), reported before any work where it can be
  3    training diverged: a non-finite loss or gradient norm; the run stopped before saving it
  124  preempted: SIGTERM / SIGUSR1 / SIGINT arrived, a checkpoint was saved; requeue and resume

Only 124 is worth a requeue; 2 and 3 fail the same way again until a person changes something.
Under torchrun a worker's own exit code is lost (torchrun exits 1 whenever a worker fails), so a trainer
that stops with a permanent code also writes it to the file the launcher names in PRIMUS_BRIDGE_EXIT_FILE;
the launcher reports that code instead of torchrun's.
"""

import json
import os
from pathlib import Path

from ..config import CONFIG_EXIT_CODE
from ..utils.atomic import atomic_write_text

DOES_NOT_FIT_EXIT_CODE = 1
NONFINITE_EXIT_CODE = 3
PREEMPTED_EXIT_CODE = 124
PERMANENT_EXIT_CODES = (CONFIG_EXIT_CODE, NONFINITE_EXIT_CODE)

EXIT_FILE_ENV = "PRIMUS_BRIDGE_EXIT_FILE"


class PermanentFailure(Exception):
    """A failure a rerun would repeat: the command prints it and exits with `exit_code` (not requeued)."""

    exit_code = 1


def record_exit(code: int, reason: str) -> None:
    """Leave `code` for the launcher (when it asked for it through PRIMUS_BRIDGE_EXIT_FILE)."""
    path = os.environ.get(EXIT_FILE_ENV)
    if not path:
        return
    earlier = recorded_exit(path)
    if earlier is not None and earlier[0] in PERMANENT_EXIT_CODES and code not in PERMANENT_EXIT_CODES:
        return  # another rank's permanent failure wins over this rank's requeue
    atomic_write_text(path, json.dumps({"exit_code": code, "reason": reason}) + "\n")


def recorded_exit(path: str | Path) -> tuple[int, str] | None:
    """(code, reason) a trainer left in `path`, or None when it left nothing readable."""
    try:
        data = json.loads(Path(path).read_text())
        return int(data["exit_code"]), str(data.get("reason", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None
