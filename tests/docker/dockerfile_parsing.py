"""What the image tests share: where docker/ is, and a Dockerfile parsed into instructions."""

import re
from dataclasses import dataclass
from pathlib import Path

DOCKER = Path(__file__).resolve().parents[2] / "docker"
PLATFORMS = ("rocm", "cuda")


@dataclass(frozen=True)
class Instruction:
    keyword: str  # FROM, RUN, ENV, ...
    arguments: str  # continuation lines joined
    comments: tuple[str, ...]  # the comment lines right above it
    line: int


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with their continuation lines joined and the comment block above each."""
    instructions, comments, pending, start = [], [], "", 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            comments = comments + [line.lstrip("# ")] if line else []
            continue
        if line.startswith("#"):  # comment inside a continued instruction
            continue
        start = start or number
        pending += " " + line.removesuffix("\\").strip()
        if not line.endswith("\\"):
            keyword, _, arguments = pending.strip().partition(" ")
            instructions.append(Instruction(keyword.upper(), arguments.strip(), tuple(comments), start))
            comments, pending, start = [], "", 0
    return instructions


def pip_installs(instructions: list[Instruction]) -> list[list[str]]:
    """The arguments of every `pip install` in RUN instructions."""
    found = []
    for instruction in instructions:
        if instruction.keyword != "RUN":
            continue
        for command in re.split(r"&&|;", instruction.arguments):
            words = command.split()
            if "pip" in words and "install" in words:
                found.append(words[words.index("install") + 1:])
    return found
