"""Every pin is used, agrees with constraints.txt, and every package an image installs has a version."""

import re
import tomllib

from dockerfile_parsing import DOCKER, PLATFORMS

from primus_bridge.doctor.software import COMM_LIBRARY, LIBRARIES

# pins the doctor and docker/import_check.py compare (besides each library's own pin)
COMPARED_SUFFIXES = {"PYTHON_VERSION", "VERSION", "TORCH_VERSION"}


def pinned(path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_every_pin_is_used(pins):
    images_mk = (DOCKER / "images.mk").read_text()
    dockerfiles = {p: (DOCKER / f"Dockerfile.{p}").read_text() for p in PLATFORMS}
    compared = COMPARED_SUFFIXES | {lib.pin for lib in LIBRARIES} | {key for _, key in COMM_LIBRARY.values()}
    for key in pins:
        platforms = [p for p in PLATFORMS if key.startswith(p.upper() + "_")] or list(PLATFORMS)
        for platform in platforms:
            assert f"ARG {key}\n" in dockerfiles[platform] and f"${{{key}}}" in dockerfiles[platform], \
                f"{key} is not used by Dockerfile.{platform}"
        suffix = key.split("_", 1)[1] if platforms != list(PLATFORMS) else key
        assert key.endswith("BASE_IMAGE") or key == "IMAGE_NAME" or suffix in compared, \
            f"{key}: nothing compares the installed version with it"
    assert "$(IMAGE_NAME)" in images_mk and "$(MEGATRON_CORE_VERSION)" in images_mk


def test_megatron_pins_equal_constraints(repo, pins):
    constraints = pinned(repo / "constraints.txt")
    assert constraints["megatron-core"] == pins["MEGATRON_CORE_VERSION"]
    assert constraints["megatron-bridge"] == pins["MEGATRON_BRIDGE_VERSION"]


def test_image_only_packages_are_pinned_in_constraints(repo):
    names = [line.strip() for line in (DOCKER / "requirements-image.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    constraints = pinned(repo / "constraints.txt")
    assert names and all(re.fullmatch(r"[a-z0-9\-]+", name) for name in names), \
        "names only: versions live in constraints.txt"
    assert [name for name in names if name not in constraints] == []


def test_project_requirements_are_pinned_by_constraints(repo):
    """What the images install from pyproject.toml resolves to constraints.txt pins (torch, numpy: the base's)."""
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["megatron"],
                    *project["optional-dependencies"]["report"]]
    names = {re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.\-]+", r).group()).lower() for r in requirements}
    unpinned = names - set(pinned(repo / "constraints.txt")) - {"torch", "numpy"}
    assert not unpinned, f"add pins to constraints.txt for {sorted(unpinned)}"
