"""The exit code the scheduler reads: PRIMUS_BRIDGE_EXIT_CODES says how a checkpointed stop is reported.

shell (the default): codes pass through. A checkpointed stop is 124 (PREEMPTED_EXIT_CODE), which
  slurm/common.sh requeues on.
pytorchjob: for a Kubeflow PyTorchJob whose replicas use `restartPolicy: ExitCode`. The training operator then
  recreates a failed pod only when its `pytorch` container exited with 128 or more, and fails the whole job
  on 1-127 (IsRetryableExitCode in pkg/util/train of kubeflow/training-operator, v1.8 and v1.9), so 124
  would end the job. The launcher reports a checkpointed stop as 252 (128 + 124) instead. Every other code
  is left as it is: 1-127 stay permanent (a configuration error, a diverged run, a failed trainer) and
  deaths by a signal (128 + N, e.g. 137 from the OOM killer) stay retryable.
"""

import logging

from ..config import ConfigError
from ..run.exit_codes import PREEMPTED_EXIT_CODE
from .topology import Env

EXIT_CODES_ENV = "PRIMUS_BRIDGE_EXIT_CODES"
STYLES = ("shell", "pytorchjob")
RETRYABLE_FROM = 128
"""The training operator's ExitCode rule: exit codes from 128 up are retried, 1-127 are not."""

PYTORCHJOB_PREEMPTED_EXIT_CODE = RETRYABLE_FROM + PREEMPTED_EXIT_CODE

log = logging.getLogger("primus_bridge")


def exit_code_style(env: Env) -> str:
    """The style named by PRIMUS_BRIDGE_EXIT_CODES (shell when unset); a clear error for any other value."""
    raw = env.get(EXIT_CODES_ENV, "")
    style = raw.strip() or "shell"
    if style not in STYLES:
        raise ConfigError(f"{EXIT_CODES_ENV}={raw!r}: expected one of {', '.join(STYLES)} (pytorchjob for a "
                          "Kubeflow PyTorchJob with restartPolicy: ExitCode, see k8s/README.md)")
    return style


def reported_exit_code(code: int, style: str) -> int:
    """`code` as the launcher exits with it under `style`."""
    if style == "pytorchjob" and code == PREEMPTED_EXIT_CODE:
        log.info("launcher: reporting %d for the checkpointed stop (%s=pytorchjob: the training operator "
                 "retries exit codes from %d up)", PYTORCHJOB_PREEMPTED_EXIT_CODE, EXIT_CODES_ENV, RETRYABLE_FROM)
        return PYTORCHJOB_PREEMPTED_EXIT_CODE
    return code
