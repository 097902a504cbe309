"""How an adaptation replaces one attribute of Megatron-Core or Megatron-Bridge, once.

A replacement carries the project's own marker: `__primus_compat__` (the registry entry that installed it)
and `__primus_original__` (the library's object it stands in for). `__wrapped__` is not used: library
functions carry it too (functools.wraps), so it cannot tell ours from theirs.
"""

from collections.abc import Callable

ENTRY_ATTRIBUTE = "__primus_compat__"
ORIGINAL_ATTRIBUTE = "__primus_original__"


def installed_by(value) -> str | None:
    """The registry entry whose replacement `value` is, or None for the library's own object."""
    return getattr(value, ENTRY_ATTRIBUTE, None)


def library_original(value):
    """The library's object behind one of our replacements; `value` itself when it is not one."""
    return getattr(value, ORIGINAL_ATTRIBUTE) if installed_by(value) else value


def mark(replacement, entry: str, original):
    """Give `replacement` the marker of `entry`, standing in for `original`; returns `replacement`."""
    setattr(replacement, ENTRY_ATTRIBUTE, entry)
    setattr(replacement, ORIGINAL_ATTRIBUTE, original)
    return replacement


def replace_once(entry: str, owner, name: str, make: Callable[[Callable], Callable]) -> Callable:
    """Set `owner.name` to `make(original)`, marked as `entry`'s, unless `entry` already did; returns what is
    in place. The registry has verified `owner.name` before any entry's installer runs."""
    current = getattr(owner, name)
    if installed_by(current) == entry:
        return current
    replacement = mark(make(current), entry, current)
    setattr(owner, name, replacement)
    return replacement
