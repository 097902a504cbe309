"""Use Megatron-Core's prebuilt dataset helpers instead of compiling them at start-up.

`finetune()` -> `initialize_megatron()` always calls `megatron.core.datasets.utils.compile_helpers()`,
which runs `make` in the installed package. The megatron-core wheel ships the compiled
`helpers_cpp` extension but no Makefile, so `make` fails and the run exits ("Failed to compile the
C++ dataset helper functions"). Our data never uses those helpers; when the compiled module imports,
there is nothing to build. Registry entry `prebuilt_dataset_helpers`, installed by
`use_prebuilt_dataset_helpers()`.
"""

import importlib
import logging

from .marker import replace_once

log = logging.getLogger("primus_bridge")

ENTRY = "prebuilt_dataset_helpers"

_INITIALIZE_MODULE = "megatron.bridge.training.initialize"


def helpers_prebuilt() -> bool:
    try:
        importlib.import_module("megatron.core.datasets.helpers_cpp")
    except ImportError:
        return False
    return True


def use_prebuilt_dataset_helpers() -> None:
    """Make Megatron-Bridge's start-up skip compiling the helpers when the prebuilt module imports."""

    def make(original):
        def compile_unless_prebuilt() -> None:
            if helpers_prebuilt():
                log.debug("megatron.core dataset helpers are prebuilt; not compiling")
                return
            original()

        return compile_unless_prebuilt

    replace_once(ENTRY, importlib.import_module(_INITIALIZE_MODULE), "compile_helpers", make)
