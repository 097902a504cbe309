"""Build-time check of a primus-bridge image; any problem fails the build.

    python docker/import_check.py --platform rocm --versions docker/versions.env

1. torch is the platform's build (a CUDA base in Dockerfile.rocm is caught here).
2. Python, torch, ROCm/CUDA, TransformerEngine, flash-attn, apex, Megatron-Core, Megatron-Bridge and
   RCCL/NCCL are the versions docker/versions.env pins (the same comparison `primus-bridge doctor` makes).
3. Every module the product imports loads. A build has no GPU driver, so modules that load one at import
   (RUNTIME_ONLY) are checked as installed versions here and imported by `primus-bridge doctor` on a GPU node.
"""

import argparse
import sys
from pathlib import Path

from primus_bridge.doctor.pins import read_versions_file, torch_platform
from primus_bridge.doctor.report import Check, Status, failed, to_text
from primus_bridge.doctor.software import Pins, import_error, software_checks

MODULES = (
    "primus_bridge.cli.main", "primus_bridge.config", "primus_bridge.doctor", "recipes",
    "transformers", "peft", "accelerate", "safetensors", "tokenizers", "datasets",
    "megatron.core", "megatron.energon", "modelopt", "hydra", "omegaconf", "einops", "tensorboard",
    "matplotlib", "pyarrow",
)
RUNTIME_ONLY = {  # module: why it cannot be imported during a build
    "transformer_engine": "dlopens the GPU driver (libcuda / libamdhip64 device init) at import",
    "flash_attn": "loads its GPU kernels, which need the driver, at import",
    "apex": "its CUDA/HIP extensions need the driver at import",
    "megatron.bridge": "imports transformer_engine at module level",
}


def import_checks(modules: tuple[str, ...]) -> list[Check]:
    checks = []
    for module in modules:
        error = import_error(module)
        checks.append(Check(f"import {module}", Status.FAIL, error, "install what it needs in the Dockerfile")
                      if error else Check(f"import {module}", Status.PASS, "loads"))
    return checks


def platform_check(expected: str) -> Check:
    found = torch_platform()
    if found != expected:
        return Check("platform", Status.FAIL, f"torch in the base image is a {found} build, not {expected}",
                     f"use a {expected} base image ({expected.upper()}_BASE_IMAGE in docker/versions.env)")
    return Check("platform", Status.PASS, f"torch is a {found} build")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--platform", choices=("rocm", "cuda"), required=True)
    parser.add_argument("--versions", type=Path, required=True, help="docker/versions.env")
    args = parser.parse_args(argv)
    pins = Pins(read_versions_file(args.versions), args.platform, in_image=True)
    checks = [platform_check(args.platform), *software_checks(pins, try_import=False), *import_checks(MODULES),
              *(Check(f"import {module}", Status.SKIP, f"not at build time: {why}; doctor imports it on a GPU node")
                for module, why in RUNTIME_ONLY.items())]
    print(to_text(checks, f"image build, {args.platform}"))
    return 1 if failed(checks) else 0


if __name__ == "__main__":
    sys.exit(main())
