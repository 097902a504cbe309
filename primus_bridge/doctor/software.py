"""Installed software against the image pins: Python, torch and its ROCm/CUDA, the GPU libraries,
Megatron, and the collective-communication library (RCCL or NCCL).

Inside a primus-bridge image a version that differs from its pin is a failure (the image drifted);
outside one it is a warning (the pins describe the images, not this machine).
"""

import functools
import importlib
import importlib.metadata
import importlib.util
import platform as platform_module
import warnings
from dataclasses import dataclass
from pathlib import Path

from .pins import pin_key, same_release, same_version
from .report import Check, Status

IMAGE_FIX = "rebuild the image from this checkout (make image-rocm / make image-cuda); do not pip-install " \
            "GPU libraries over the image's"
HOST_FIX = "use the primus-bridge image for the pinned stack (make image-rocm / make image-cuda)"


@dataclass(frozen=True)
class Pins:
    values: dict[str, str]  # versions.env
    platform: str  # 'rocm', 'cuda' or 'cpu' (the torch build)
    in_image: bool  # running inside a primus-bridge image

    def key(self, name: str) -> str:
        return pin_key(self.platform, name)

    def compare(self, label: str, found: str | None, name: str, same=same_version) -> Check:
        key, pin = self.key(name), self.values.get(self.key(name))
        if pin is None:  # no versions file, or nothing pinned for this platform
            return Check(label, Status.PASS, f"{found} (no {key} pin to compare with)")
        if found is not None and same(pin, found):
            return Check(label, Status.PASS, f"{found} (pinned {pin})")
        status, fix = (Status.FAIL, IMAGE_FIX) if self.in_image else (Status.WARN, HOST_FIX)
        have = "not installed" if found is None else f"{found} installed"
        return Check(label, status, f"{have}; the image pins {pin} ({key} in versions.env)", fix)


@dataclass(frozen=True)
class Library:
    name: str  # distribution name, as pip shows it
    module: str  # what `import` loads
    pin: str  # key suffix in versions.env


LIBRARIES = (
    Library("transformer-engine", "transformer_engine", "TE_VERSION"),
    Library("flash-attn", "flash_attn", "FLASH_ATTN_VERSION"),
    Library("apex", "apex", "APEX_VERSION"),
    Library("megatron-core", "megatron.core", "MEGATRON_CORE_VERSION"),
    Library("megatron-bridge", "megatron.bridge", "MEGATRON_BRIDGE_VERSION"),
)
COMM_LIBRARY = {"rocm": ("rccl", "RCCL_VERSION"), "cuda": ("nccl", "NCCL_VERSION")}
TOOLKIT = {"rocm": ("rocm", "hip"), "cuda": ("cuda", "cuda")}  # check name, torch.version attribute


def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.cache
def _owners() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def library_distribution(library: Library) -> str | None:
    """The installed distribution that provides the library: its usual name, or for a top-level module
    whatever distribution ships it (vendor builds rename it, e.g. a ROCm TransformerEngine wheel)."""
    if installed_version(library.name) is not None:
        return library.name
    if "." in library.module:  # 'megatron' is shared by several distributions: no guessing
        return None
    return next(iter(_owners().get(library.module, [])), None)


def torch_checks(pins: Pins) -> list[Check]:
    """torch itself, then the ROCm/CUDA it was built with."""
    found = installed_version("torch")
    if pins.platform == "cpu":
        detail = f"{found}: a CPU-only build (no ROCm or CUDA)" if found else "torch is not installed"
        return [Check("torch", Status.WARN, detail, HOST_FIX)]
    import torch

    label, attribute = TOOLKIT[pins.platform]
    return [pins.compare("torch", found, "TORCH_VERSION"),
            pins.compare(label, getattr(torch.version, attribute), "VERSION", same=same_release)]


def import_error(module: str) -> str | None:
    """Why `import module` fails, or None when it loads."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importlib.import_module(module)
    except Exception as error:  # any import-time failure is the finding
        return f"{type(error).__name__}: {error}"
    return None


def shadowing_path(distribution: str, module: str) -> str | None:
    """Where `import module` loads from when that is not the installed distribution's copy (a PYTHONPATH
    checkout, say), else None. Unknown (no record of the distribution's files) counts as not shadowed."""
    try:
        spec = importlib.util.find_spec(module)
        dist = importlib.metadata.distribution(distribution)
    except (ImportError, ValueError, importlib.metadata.PackageNotFoundError):
        return None
    if spec is None or not spec.origin or not dist.files:
        return None
    origin = Path(spec.origin).resolve()
    recorded = (Path(dist.locate_file(f)).resolve() for f in dist.files if f.name == origin.name)
    return None if origin in recorded else str(origin)


def library_check(library: Library, pins: Pins, try_import: bool) -> Check:
    """Version against the pin; with try_import also whether the module loads (on a GPU node)."""
    distribution = library_distribution(library)
    found = installed_version(distribution) if distribution else None
    if pins.key(library.pin) not in pins.values:
        if found is None:
            return Check(library.name, Status.SKIP, f"not installed and not pinned for {pins.platform}")
        return Check(library.name, Status.PASS, f"{found} (no separate pin for {pins.platform}: "
                                                "fixed by the base image digest)")
    check = pins.compare(library.name, found, library.pin)
    shadow = shadowing_path(distribution, library.module) if found else None
    if shadow:
        return Check(library.name, Status.FAIL if pins.in_image else Status.WARN,
                     f"`import {library.module}` loads {shadow}, not the installed {library.name} {found}",
                     "remove that folder from PYTHONPATH / sys.path: the pinned copy is the installed one")
    error = import_error(library.module) if try_import and found else None
    if error:
        return Check(library.name, Status.FAIL, f"{found} is installed but `import {library.module}` fails: {error}",
                     IMAGE_FIX if pins.in_image else HOST_FIX)
    return check


def comm_library_check(pins: Pins) -> Check:
    if pins.platform == "cpu":
        return Check("rccl/nccl", Status.SKIP, "CPU-only torch: no collective-communication library")
    label, name = COMM_LIBRARY[pins.platform]
    import torch

    try:
        found = ".".join(str(part) for part in torch.cuda.nccl.version())
    except Exception as error:  # torch passes on whatever the library loader raised
        return Check(label, Status.WARN, f"could not read the {label.upper()} version: {error}",
                     IMAGE_FIX if pins.in_image else HOST_FIX)
    return pins.compare(label, found, name)


def software_checks(pins: Pins, try_import: bool) -> list[Check]:
    return [
        pins.compare("python", platform_module.python_version(), "PYTHON_VERSION"),
        *torch_checks(pins),
        *(library_check(library, pins, try_import) for library in LIBRARIES),
        comm_library_check(pins),
    ]
