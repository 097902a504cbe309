"""Shared fixtures of the image tests: the pins and the two Dockerfiles, parsed."""

import pytest
from dockerfile_parsing import DOCKER, PLATFORMS, Instruction, parse_dockerfile

from primus_bridge.doctor.pins import read_versions_file


@pytest.fixture(scope="session")
def pins() -> dict[str, str]:
    return read_versions_file(DOCKER / "versions.env")


@pytest.fixture(scope="session")
def dockerfiles() -> dict[str, list[Instruction]]:
    return {platform: parse_dockerfile(DOCKER / f"Dockerfile.{platform}") for platform in PLATFORMS}
