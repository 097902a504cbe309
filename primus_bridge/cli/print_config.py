"""`primus-bridge print-config`: the resolved config as YAML; `--explain` says where each value came from."""

import yaml

from ..config import add_config_arguments, load_config_with_origins
from ..config.layers import flatten
from .errors import run_verb, wants_debug
from .parser import ArgumentParser


def _explained(dumped: dict, origins: dict[str, str]) -> str:
    """YAML with a `# origin` comment after every leaf."""
    lines = []
    for line in yaml.safe_dump(dumped, sort_keys=False).splitlines():
        lines.append(line)
    flat = flatten(dumped)
    out, path = [], []
    for line in lines:
        indent = (len(line) - len(line.lstrip(" "))) // 2
        key = line.strip().split(":", 1)[0]
        if line.strip().startswith("- ") or ":" not in line:
            out.append(line)
            continue
        path = path[:indent] + [key]
        dotted = ".".join(path)
        out.append(f"{line}    # {origins.get(dotted, 'default')}" if dotted in flat else line)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="primus-bridge print-config", description=__doc__)
    add_config_arguments(parser)
    parser.add_argument("--explain", action="store_true", help="show where each value came from")
    args = parser.parse_args(argv)

    def body():
        cfg, origins = load_config_with_origins(args)
        dumped = cfg.model_dump(mode="json")
        print(_explained(dumped, origins) if args.explain else yaml.safe_dump(dumped, sort_keys=False), end="\n")

    return run_verb(body, wants_debug(argv or []))
