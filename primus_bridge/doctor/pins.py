"""The image pins (docker/versions.env) and how an installed version is compared with one.

ROCM_* keys pin the ROCm image, CUDA_* the CUDA image, unprefixed keys both. Which set applies is
read from the torch build: a HIP build is 'rocm', a CUDA build 'cuda', anything else 'cpu'.
"""

import re
from pathlib import Path

from packaging.version import InvalidVersion, Version

# The checkout's (or image's: /opt/primus-bridge) pins file, beside the package.
DEFAULT_VERSIONS_FILE = Path(__file__).resolve().parents[2] / "docker" / "versions.env"
_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)=(\S+)$")


class PinsError(ValueError):
    """A malformed versions file; the message names file:line."""


def read_versions_file(path: str | Path) -> dict[str, str]:
    """KEY=value lines; blank lines and # comments are skipped."""
    pins = {}
    for number, raw in enumerate(Path(path).read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            raise PinsError(f"{path}:{number}: expected KEY=value (no quotes or spaces), got {raw!r}")
        if match.group(1) in pins:
            raise PinsError(f"{path}:{number}: {match.group(1)} is set twice; keep one")
        pins[match.group(1)] = match.group(2)
    return pins


def torch_platform() -> str:
    """'rocm', 'cuda' or 'cpu': what the installed torch was built for."""
    try:
        import torch
    except ImportError:
        return "cpu"
    if getattr(torch.version, "hip", None):
        return "rocm"
    return "cuda" if torch.version.cuda else "cpu"


def pin_key(platform: str, name: str) -> str:
    """'rocm', 'TE_VERSION' -> 'ROCM_TE_VERSION'; shared names (MEGATRON_*) have no prefix."""
    return name if name.startswith("MEGATRON_") else f"{platform.upper()}_{name}"


def same_version(pin: str, found: str) -> bool:
    """Equal public versions, and the pin's local segments (after '+') lead the installed ones.

    '2.7.4.post1' matches '2.7.4.post1+git5231d95fe1.54157505' (a vendor build tag);
    '2.13.0a0+8145d630e8.nv26.06' matches '2.13.0a0+8145d630e8.nv26.6.54250401'.
    """
    try:
        want, have = Version(pin), Version(found)
    except InvalidVersion:
        return pin == found
    want_local = want.local.split(".") if want.local else []
    have_local = have.local.split(".") if have.local else []
    return want.public == have.public and have_local[: len(want_local)] == want_local


def same_release(pin: str, found: str) -> bool:
    """Toolkit versions: '7.15' matches '7.15.0' and '7.15.60850'; '13.3' matches '13.3'."""
    want, have = pin.split("."), found.split(".")
    return have[: len(want)] == want
