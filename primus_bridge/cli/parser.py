"""The argument parser every verb uses: negative numbers are values, and `--version` prints the version.

argparse reads `--lr -1e-4` as two options (its negative-number rule knows no exponents), so a flag that
takes a value and is followed by a number gets that number, whatever its sign.
"""

import argparse
import sys
from importlib import metadata

from ..utils.numbers import is_number

DISTRIBUTION = "primus-bridge"


def version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def version_line(prog: str = DISTRIBUTION) -> str:
    return f"{prog} {version()}"


class ArgumentParser(argparse.ArgumentParser):
    """argparse.ArgumentParser with `--version` and flag values that may be negative numbers."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_argument("--version", action="version", version=version_line(),
                          help="print the primus-bridge version and exit")

    def _takes_value(self, option: str) -> bool:
        action = self._option_string_actions.get(option)
        return action is not None and action.nargs != 0

    def joined_negative_values(self, args: list[str]) -> list[str]:
        """['--lr', '-1e-4'] -> ['--lr=-1e-4'] for every flag that takes a value; the rest unchanged."""
        out, i = [], 0
        while i < len(args):
            token = args[i]
            following = args[i + 1] if i + 1 < len(args) else None
            if following is not None and following.startswith("-") and is_number(following) \
                    and self._takes_value(token):
                out.append(f"{token}={following}")
                i += 2
                continue
            out.append(token)
            i += 1
        return out

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        if "--" in args:  # everything after -- is positional
            cut = args.index("--")
            args = self.joined_negative_values(args[:cut]) + args[cut:]
        else:
            args = self.joined_negative_values(args)
        return super().parse_known_args(args, namespace)
