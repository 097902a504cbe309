"""The Hugging Face token: read only from the environment or a secret file, and never shown or saved.

`HF_TOKEN` wins; else `HF_TOKEN_FILE` names a file holding the token (a mounted Kubernetes / SLURM
secret). `redact()` scrubs every known secret value (the HF token, and the experiment trackers' keys) from
text before it is logged or written, and `install_log_redaction()` puts that scrub on the project's log handlers.
"""

import logging
import os
from pathlib import Path

from ..config import ConfigError

TOKEN_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
TOKEN_FILE_ENV = "HF_TOKEN_FILE"
TRACKER_SECRET_ENV = ("WANDB_API_KEY", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
"""The experiment trackers' credentials (logging: wandb / mlflow), read by the trackers themselves."""
MASK = "***"


def hf_token() -> str | None:
    """The HF token from HF_TOKEN (or HUGGING_FACE_HUB_TOKEN), else from the file named by HF_TOKEN_FILE."""
    for name in TOKEN_ENV:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return token_from_file()


def token_from_file() -> str | None:
    """The token in the file named by HF_TOKEN_FILE, or None when the variable is unset."""
    path = os.environ.get(TOKEN_FILE_ENV, "").strip()
    if not path:
        return None
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ConfigError(f"{TOKEN_FILE_ENV}={path}: cannot read the token file ({err.strerror}); "
                          "fix the path or unset HF_TOKEN_FILE") from None
    return token or None


def secret_values() -> list[str]:
    """Every secret this process knows (so each can be scrubbed), longest first."""
    values = {os.environ.get(name, "").strip() for name in (*TOKEN_ENV, *TRACKER_SECRET_ENV)}
    try:
        values.add(token_from_file() or "")
    except ConfigError:
        pass
    return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)


def redact(text: str) -> str:
    for secret in secret_values():
        text = text.replace(secret, MASK)
    return text


def redact_values(tree):
    """`redact` on every string in a tree of dicts and lists (so a YAML or JSON dump of it stays well-formed)."""
    if isinstance(tree, dict):
        return {key: redact_values(value) for key, value in tree.items()}
    if isinstance(tree, list):
        return [redact_values(value) for value in tree]
    return redact(tree) if isinstance(tree, str) else tree


class RedactSecrets(logging.Filter):
    """Logging filter that replaces secret values in the formatted message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install_log_redaction(logger: logging.Logger) -> None:
    """Add the redaction filter to each handler of `logger` (once)."""
    for handler in logger.handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())
