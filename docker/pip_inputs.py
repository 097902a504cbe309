"""Write the pip inputs of an image build: what to install, and the constraints it is installed under.

    python docker/pip_inputs.py --base-freeze FREEZE --constraints constraints.txt \
        --pyproject pyproject.toml --extras megatron,report --out-dir DIR

DIR/requirements.txt: the project's dependencies and the named extras (from pyproject.toml).
DIR/constraints.txt: the project's pins (constraints.txt), except that the packages the base image
compiled against its GPU runtime (BASE_OWNED) keep the base's version: installing the project must
never replace the image's torch, Triton, TransformerEngine, flash-attention or apex, and numpy stays
the version those were built with. Other packages resolve under the project's pins; the build records
the result in the image (pip freeze).
"""

import argparse
import re
import tomllib
from pathlib import Path

BASE_OWNED = frozenset({
    "torch", "torchvision", "torchaudio", "triton", "pytorch-triton-rocm", "numpy",
    "transformer-engine", "transformer-engine-torch", "flash-attn", "apex",
})
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")


def canonical(name: str) -> str:
    """PEP 503 name: 'Flash_Attn' -> 'flash-attn'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """name==version lines (comments and blank lines skipped); anything else is an error naming file:line."""
    pins = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _PIN.match(line)
        if not match:
            raise SystemExit(f"{path}:{number}: expected name==version, got {raw!r}")
        pins[canonical(match.group(1))] = match.group(2)
    return pins


def image_constraints(project: dict[str, str], base: dict[str, str]) -> dict[str, str]:
    """The project's pins, with the base's version for every BASE_OWNED package the base has."""
    merged = {name: version for name, version in project.items() if name not in BASE_OWNED}
    merged.update({name: version for name, version in base.items() if name in BASE_OWNED})
    return dict(sorted(merged.items()))


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [extra for extra in extras if extra not in optional]
    if unknown:
        raise SystemExit(f"{pyproject}: no extra {', '.join(unknown)} in [project.optional-dependencies]")
    return [*project["dependencies"], *(req for extra in extras for req in optional[extra])]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-freeze", type=Path, required=True, help="`pip list --format=freeze` of the base")
    parser.add_argument("--constraints", type=Path, required=True, help="the project's constraints.txt")
    parser.add_argument("--pyproject", type=Path, required=True)
    parser.add_argument("--extras", default="", help="comma-separated extras to install")
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    pins = image_constraints(read_pins(args.constraints), read_pins(args.base_freeze))
    extras = [extra for extra in args.extras.split(",") if extra]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "constraints.txt").write_text("".join(f"{n}=={v}\n" for n, v in pins.items()))
    (args.out_dir / "requirements.txt").write_text("".join(f"{r}\n" for r in requirements(args.pyproject, extras)))


if __name__ == "__main__":
    main()
