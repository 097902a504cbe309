"""`primus-bridge doctor [--json]`: every check, one line each with a fix; exit 1 when any check fails.

The config flags (--config, --data_path, --save, --hf_model_name_or_path, --load, ...) say which paths to
check; without them only the machine and the software are checked.
"""

import argparse
import os
from pathlib import Path

from ..config import PrimusConfig, add_config_arguments, load_config
from ..cli.errors import run_verb, wants_debug
from ..cli.parser import ArgumentParser
from .adaptations import adaptation_checks
from .environment import environment_checks
from .gpus import gpu_checks
from .inputs import data_path_check, hf_model_check, load_check
from .pins import DEFAULT_VERSIONS_FILE, PinsError, read_versions_file, torch_platform
from .report import Check, Status, failed, to_json, to_text
from .software import Pins, software_checks
from .storage import checkpoint_disk_check, shm_check

IMAGE_VARIABLE = "PRIMUS_BRIDGE_IMAGE"  # set by docker/Dockerfile.{rocm,cuda} to the image's platform


def load_pins(path: Path) -> tuple[dict[str, str], Check]:
    """The image pins, and a check saying where they came from (or why there are none)."""
    if not path.is_file():
        return {}, Check("versions", Status.WARN, f"no pins file at {path}: versions are reported, not compared",
                         "pass --versions docker/versions.env (from a primus-bridge checkout or image)")
    try:
        return read_versions_file(path), Check("versions", Status.PASS, f"image pins from {path}")
    except PinsError as error:
        return {}, Check("versions", Status.FAIL, str(error), "fix that line of the versions file")


def image_check(platform: str, environ=os.environ) -> Check:
    """Inside a primus-bridge image (PRIMUS_BRIDGE_IMAGE names its platform) torch must be that platform's."""
    image = environ.get(IMAGE_VARIABLE)
    if not image:
        return Check("image", Status.PASS, f"not in a primus-bridge image ({IMAGE_VARIABLE} unset): "
                     "versions that differ from the pins are warnings")
    if image != platform:
        return Check("image", Status.FAIL, f"a primus-bridge {image} image, but torch here is a {platform} build",
                     "rebuild the image (make image-rocm / make image-cuda); do not replace its torch")
    return Check("image", Status.PASS, f"primus-bridge {image} image")


def all_checks(cfg: PrimusConfig, versions: Path) -> tuple[str, list[Check]]:
    platform = torch_platform()
    values, pins_check = load_pins(versions)
    gpus = gpu_checks(platform)
    gpu_visible = gpus[0].status is Status.PASS
    pins = Pins(values, platform, in_image=bool(os.environ.get(IMAGE_VARIABLE)))
    checks = [
        image_check(platform),
        pins_check,
        *software_checks(pins, try_import=gpu_visible),  # GPU libraries load only where a driver is
        *adaptation_checks(try_import=gpu_visible),
        *gpus,
        *environment_checks(os.environ),
        shm_check(),
        checkpoint_disk_check(cfg.checkpointing.save),
        *([data_path_check(source.path) for source in cfg.data.sources()] if cfg.data.data_path
          else [data_path_check(None)]),
        hf_model_check(cfg.hf_model_name_or_path),
        load_check(cfg.model.load),
    ]
    return platform, checks


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="primus-bridge doctor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--versions", metavar="FILE", type=Path, default=DEFAULT_VERSIONS_FILE,
                        help=f"image pins to compare with (default: {DEFAULT_VERSIONS_FILE})")
    add_config_arguments(parser)
    args = parser.parse_args(argv)

    def body() -> int:
        platform, checks = all_checks(load_config(args), args.versions)
        print(to_json(checks, platform) if args.json else to_text(checks, platform))
        return 1 if failed(checks) else 0

    return run_verb(body, wants_debug(argv or []))
