"""Megatron-Bridge imports without TransformerEngine, and everything else still sees TE as absent."""

import subprocess
import sys

import pytest

from primus_bridge.engine.megatron.compat import te_compat

pytestmark = pytest.mark.slow


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.skipif(te_compat.transformer_engine_available(), reason="TransformerEngine is installed here")
def test_bridge_imports_and_te_stays_absent():
    out = _run(
        "import sys, importlib\n"
        "import primus_bridge.engine.megatron\n"
        "print('bridge_before', 'megatron.bridge' in sys.modules)\n"
        "from primus_bridge.engine.megatron.compat.te_compat import import_megatron_bridge, TE_FLAG_MODULES\n"
        "import_megatron_bridge()\n"
        "print('te_modules', [m for m in sys.modules if m.startswith('transformer_engine')])\n"
        "import megatron.core.extensions.transformer_engine as mcore_te\n"
        "print('mcore_have_te', mcore_te.HAVE_TE)\n"
        "flags = [f'{m}.{a}' for m in TE_FLAG_MODULES for a, v in vars(importlib.import_module(m)).items()\n"
        "         if a.startswith('HAVE_TE') and v]\n"
        "print('true_flags', flags)\n"
        "try:\n"
        "    import transformer_engine\n"
        "    print('import_te', 'succeeded')\n"
        "except ImportError:\n"
        "    print('import_te', 'failed')\n"
        "import megatron.bridge.peft.lora_layers as lora_layers\n"
        "print('isinstance', isinstance(object(), lora_layers.te.Linear))\n"
        "try:\n"
        "    lora_layers.te.Linear(4, 4)\n"
        "except RuntimeError as err:\n"
        "    print('calling', 'needs TransformerEngine' in str(err))\n"
    )
    keys = {"bridge_before", "te_modules", "mcore_have_te", "true_flags", "import_te", "isinstance", "calling"}
    lines = dict(line.split(" ", 1) for line in out.splitlines() if line.split(" ", 1)[0] in keys)
    assert lines == {"bridge_before": "False", "te_modules": "[]", "mcore_have_te": "False", "true_flags": "[]",
                     "import_te": "failed", "isinstance": "False", "calling": "True"}


def test_lora_matches_megatron_linear_layers_without_te(megatron_cpu):
    """The bug the flags cause: LoRA's isinstance checks against TE classes must not run without TE."""
    import megatron.bridge.peft.utils as peft_utils

    if not te_compat.transformer_engine_available():
        assert peft_utils.HAVE_TE is False


def test_prebuilt_dataset_helpers_skip_compilation(megatron_cpu):
    import megatron.bridge.training.initialize as initialize

    from primus_bridge.engine.megatron.compat.marker import installed_by, library_original
    from primus_bridge.engine.megatron.compat.prebuilt_helpers import (
        ENTRY, helpers_prebuilt, use_prebuilt_dataset_helpers,
    )

    use_prebuilt_dataset_helpers()
    use_prebuilt_dataset_helpers()  # idempotent: wraps the original once
    assert helpers_prebuilt()
    assert installed_by(initialize.compile_helpers) == ENTRY
    assert library_original(initialize.compile_helpers).__module__ == "megatron.core.datasets.utils"
    initialize.compile_helpers()  # returns without running make (the wheel has no Makefile)


def test_single_process_group_inside_torchrun_does_not_wait_for_a_server():
    """Under torchrun every TCP rendezvous goes to the launcher's agent store; ours must not use one."""
    out = _run(
        "import os\n"
        "os.environ.update(TORCHELASTIC_USE_AGENT_STORE='True', TORCHELASTIC_RESTART_COUNT='0',\n"
        "                  MASTER_ADDR='127.0.0.1', MASTER_PORT='1', RANK='0', WORLD_SIZE='1')\n"
        "from primus_bridge.engine.megatron.runtime import prepare_megatron\n"
        "prepare_megatron()\n"
        "import torch.distributed as dist\n"
        "from primus_bridge.engine.megatron.process_group import single_process_group\n"
        "with single_process_group():\n"
        "    print('world', dist.get_world_size())\n"
        "print('after', dist.is_initialized())\n"
    )
    assert "world 1" in out and "after False" in out
