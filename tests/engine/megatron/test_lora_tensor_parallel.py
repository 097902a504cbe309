"""Per-projection LoRA over 2 tensor-parallel ranks (CPU, gloo): each rank places its share of the q/k/v and
gate/up adapters' outputs in its share of the fused layers, and the export gathers them into PEFT's adapter.

The worker (lora_tp_worker.py) runs under torchrun like test_convert_parallel_cpu.py's; the test compares its
logits with PEFT's model loaded from the adapter it exported, and with the merged HF model it exported.
"""

import pytest
import torch
from test_convert_parallel_cpu import hf_llama, tokens  # noqa: F401  (fixtures; this folder is on sys.path)
from test_convert_parallel_cpu import _run_worker  # noqa: F401

pytestmark = pytest.mark.slow

WORKER_TARGETS = "q_proj,k_proj,v_proj,up_proj,down_proj"
"""A whole q/k/v group and half of gate/up."""


def test_tensor_parallel_lora_equals_its_peft_export(hf_llama, tokens, tmp_path):  # noqa: F811
    import os
    import subprocess
    import sys
    from pathlib import Path

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from test_convert_parallel_cpu import LAUNCHER_VARIABLES, WORKER_TIMEOUT_S, WORLD_SIZE

    worker = Path(__file__).with_name("lora_tp_worker.py")
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={WORLD_SIZE}", "--nnodes=1",
               "--rdzv-backend=c10d", "--rdzv-endpoint=127.0.0.1:0", str(worker), "--hf", str(hf_llama),
               "--tokens", str(tokens), "--out", str(tmp_path), "--targets", WORKER_TARGETS]
    env = {key: value for key, value in os.environ.items() if key not in LAUNCHER_VARIABLES}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-8000:]}"
    batch = torch.load(tokens)
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(hf_llama, dtype=torch.float32),
                                             tmp_path / "export" / "adapter").eval()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "export", dtype=torch.float32).eval()
    got = torch.load(tmp_path / "logits.pt")
    with torch.no_grad():
        expected, from_merged = with_adapter(batch).logits, merged(batch).logits
        with with_adapter.disable_adapter():
            assert (with_adapter(batch).logits - expected).abs().max() > 0.05  # the adapters matter
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(from_merged, expected, atol=1e-4, rtol=0)
