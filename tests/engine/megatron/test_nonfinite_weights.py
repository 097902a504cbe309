"""The megatron engine refuses loaded weights holding NaN or Inf before its first step (the hf engine does at load)
and names a full filesystem during a save as such."""

import pytest
import torch

from primus_bridge.config import ConfigError, PrimusConfig


def _context(model: list):
    from megatron.bridge.training.callbacks import CallbackContext

    return CallbackContext(state=None, model=model)


def test_a_nonfinite_weight_stops_the_run_naming_tensor_and_source(megatron_cpu):
    from primus_bridge.engine.megatron.callbacks import RefuseNonfiniteWeights

    good, bad = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)
    with torch.no_grad():
        bad.bias[2] = float("inf")
    check = RefuseNonfiniteWeights("model.load: /ckpt/base")
    check.on_train_start(_context([good]))
    with pytest.raises(ConfigError, match=r"model.load: /ckpt/base: tensor bias \(Megatron's name\) holds NaN or Inf"):
        check.on_train_start(_context([good, bad]))


def test_the_source_named_is_where_the_weights_came_from(megatron_cpu, tmp_path):
    from primus_bridge.engine.megatron.engine import Resume, _weights_source

    cfg = PrimusConfig.model_validate({"hf_model_name_or_path": "meta-llama/Llama-3.1-8B"})
    assert _weights_source(cfg, None) == "hf_model_name_or_path: meta-llama/Llama-3.1-8B"
    assert _weights_source(cfg.model_copy(update={"model": cfg.model.model_copy(update={"load": "/ckpt"})}),
                           None) == "model.load: /ckpt"
    resume = Resume(10, tmp_path / "iter_0000010", None, [], fell_back=False)
    assert _weights_source(cfg, resume) == f"checkpointing.save: {tmp_path / 'iter_0000010'}"


def test_a_full_filesystem_during_a_save_is_named_as_such(megatron_cpu):
    import errno

    from primus_bridge.engine.megatron.engine import disk_full_error

    full = disk_full_error(OSError(errno.ENOSPC, "No space left on device"), "/ckpt")
    assert isinstance(full, ConfigError)
    assert str(full).startswith("checkpointing.save: the filesystem is full: writing a checkpoint to /ckpt failed")
    torch_writer = RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 5312 vs 5204")
    assert disk_full_error(torch_writer, "/ckpt") is not None
    assert disk_full_error(RuntimeError("CUDA out of memory"), "/ckpt") is None
    assert disk_full_error(OSError(errno.ENOSPC, "No space left on device"), None) is None
