"""Config errors: collected in one pass, printed on one or two lines each, exit code 2."""

import difflib

CONFIG_EXIT_CODE = 2


class ConfigError(Exception):
    """One or more problems with the user's configuration, each message naming the key and the fix."""

    def __init__(self, messages: list[str] | str):
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("\n".join(self.messages))


def did_you_mean(wrong: str, valid: list[str]) -> str:
    """' did you mean X?' for the nearest valid dotted key, or '' when nothing is close."""
    leaf = wrong.rsplit(".", 1)[-1]
    by_path = difflib.get_close_matches(wrong, valid, n=1, cutoff=0.6)
    if by_path:
        return f" did you mean {by_path[0]}?"
    leaves = {v.rsplit(".", 1)[-1]: v for v in valid}
    by_leaf = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.6)
    return f" did you mean {leaves[by_leaf[0]]}?" if by_leaf else ""
