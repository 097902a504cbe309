"""What an entry's targets look like in the installed libraries: a short hash of their source.

A target is either a library object, `module:Qualified.name` (its source, from `inspect.getsource`, with
one of our replacements seen through to the library's original), or the lines of a module's file matching
a pattern, read without importing the module (the TE-absence entry fingerprints modules that cannot
be imported before it is applied). Source is compared after dedenting and dropping blank lines and
trailing spaces, so a change of a signature, a body or a binding changes the fingerprint.
"""

import hashlib
import importlib
import importlib.util
import inspect
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

from .marker import library_original

LIBRARIES = {"megatron.core": "megatron-core", "megatron.bridge": "megatron-bridge"}
"""Module prefix -> the distribution (as pinned in constraints.txt) that ships it."""


class TargetMissing(LookupError):
    """A target's module, attribute or file is not there."""


@dataclass(frozen=True)
class Target:
    path: str
    """`module:Qualified.name` for a library object; `module` alone for lines of its file (see `lines`)."""
    fingerprint: str
    """16 hex digits of sha256 over the normalized source, as found in the versions the entry was written for."""
    lines: str | None = None
    """For a module target: the regular expression selecting the lines fingerprinted."""

    @property
    def module(self) -> str:
        return self.path.split(":", 1)[0]

    @property
    def library(self) -> str:
        return next(dist for prefix, dist in LIBRARIES.items() if self.module.startswith(prefix))


def normalized_hash(source: str) -> str:
    lines = [line.rstrip() for line in textwrap.dedent(source).splitlines() if line.strip()]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def resolve(path: str):
    """The object `module:Qualified.name` names (the module is imported)."""
    module_name, _, qualname = path.partition(":")
    try:
        value = importlib.import_module(module_name)
    except ImportError as error:
        raise TargetMissing(f"cannot import {module_name}: {error}") from error
    for part in qualname.split("."):
        if not hasattr(value, part):
            raise TargetMissing(f"{path} does not exist")
        value = getattr(value, part)
    return value


def module_file(module: str) -> Path:
    """The source file of `module`, found from its top-level package without importing anything below it."""
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)
    if not rest and spec and spec.origin:
        return Path(spec.origin)
    for root in (spec.submodule_search_locations or []) if spec else []:
        for candidate in (Path(root, *rest[:-1], f"{rest[-1]}.py"), Path(root, *rest, "__init__.py")):
            if candidate.is_file():
                return candidate
    raise TargetMissing(f"no source file for {module}")


def target_source(target: Target) -> str:
    if target.lines is not None:
        text = module_file(target.module).read_text()
        return "\n".join(line for line in text.splitlines() if re.search(target.lines, line))
    value = library_original(resolve(target.path))
    try:
        return inspect.getsource(value)
    except (OSError, TypeError) as error:
        raise TargetMissing(f"{target.path} has no Python source ({type(value).__name__})") from error


def found_fingerprint(target: Target) -> str:
    """The target's fingerprint in the installed libraries; TargetMissing when it is not there."""
    return normalized_hash(target_source(target))
