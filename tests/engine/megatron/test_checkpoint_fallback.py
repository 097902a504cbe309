"""A damaged latest megatron checkpoint: the run resumes from the previous whole one that keep_last kept, with a
warning naming the damaged file, instead of a traceback inside Megatron-Bridge's loader.

The checkpoints are written by Megatron-Core's own dist_checkpointing (torch_dist, the format the engine saves)
on the CPU; the GPU test runs the whole resume.
"""

import json
import logging
import os

import pytest
import torch

from primus_bridge.checkpoint import LATEST_FILE, Marker, iteration_dir, read_marker, write_marker
from primus_bridge.config import ConfigError, PrimusConfig
from primus_bridge.run.resume_config import config_dump

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def no_cuda_synchronize(monkeypatch):
    """Megatron-Core's torch_dist writer synchronizes CUDA before it writes; on the CPU there is nothing to wait for."""
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args, **kwargs: None)


def _config(save) -> PrimusConfig:
    return PrimusConfig.model_validate({"engine": "megatron", "training": {"train_iters": 8},
                                        "checkpointing": {"save": str(save), "keep_last": 2}})


def _save(save, step: int, cfg: PrimusConfig) -> None:
    """One iteration folder as a megatron run leaves it: Megatron-Core's files, then our config and marker."""
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing import ShardedTensor

    folder = iteration_dir(save, step)
    folder.mkdir(parents=True)
    weight = torch.full((64, 32), float(step))
    state = {"weight": ShardedTensor.from_rank_offsets("decoder.weight", weight), "iteration": step}
    dist_checkpointing.save(state, str(folder))
    (folder / "primus_run_config.yaml").write_text(config_dump(cfg))
    write_marker(folder, Marker(engine="megatron", step=step, optimizer_state=True, base_model="/models/llama",
                                config_file="primus_run_config.yaml", template="alpaca"))
    (save / LATEST_FILE).write_text(f"{step}\n")


def test_a_truncated_latest_checkpoint_falls_back_to_the_previous_one(megatron_cpu, tmp_path, caplog):
    from primus_bridge.engine.megatron.engine import _prepare_save_dir, checkpoint_problems

    save = tmp_path / "checkpoints"
    cfg = _config(save)
    for step in (2, 4):
        _save(save, step, cfg)
    assert checkpoint_problems(iteration_dir(save, 4)) == []
    data = sorted(iteration_dir(save, 4).glob("*.distcp"))
    assert data, "Megatron-Core wrote torch_dist data files"
    os.truncate(data[0], data[0].stat().st_size // 2)

    with caplog.at_level(logging.WARNING, logger="primus_bridge"):
        resume = _prepare_save_dir(cfg)
    assert (resume.step, resume.folder, resume.fell_back) == (2, iteration_dir(save, 2), True)
    assert resume.marker == read_marker(iteration_dir(save, 2))
    assert f"checkpoint {iteration_dir(save, 4)} is damaged: {data[0]}: truncated" in caplog.text
    assert "falling back to step 2" in caplog.text


def test_an_empty_file_is_named_and_with_no_whole_checkpoint_the_run_stops_clearly(megatron_cpu, tmp_path):
    from primus_bridge.engine.megatron.engine import _prepare_save_dir, checkpoint_problems

    save = tmp_path / "checkpoints"
    cfg = _config(save)
    for step in (2, 4):
        _save(save, step, cfg)
    (iteration_dir(save, 2) / "metadata.json").write_bytes(b"")
    (iteration_dir(save, 2) / "common.pt").write_bytes(b"")  # where earlier Megatron-Core versions kept it
    assert checkpoint_problems(iteration_dir(save, 2)) == [
        f"{iteration_dir(save, 2) / 'metadata.json'}: damaged (Expecting value: line 1 column 1 (char 0))",
        f"{iteration_dir(save, 2) / 'common.pt'}: damaged or not a torch file (File is not a zip file)"]
    resume = _prepare_save_dir(cfg)
    assert (resume.step, resume.fell_back) == (4, False), "the latest is whole: nothing to fall back from"

    (iteration_dir(save, 4) / ".metadata").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"no checkpoint in .* loads \(damaged: iter_0000004, iter_0000002\)"):
        _prepare_save_dir(cfg)


def test_an_unversioned_megatron_marker_resumes_with_its_recorded_config_changes(megatron_cpu, tmp_path):
    from primus_bridge.engine.megatron.engine import _prepare_save_dir

    save = tmp_path / "checkpoints"
    cfg = _config(save)
    _save(save, 3, cfg)
    earlier = [{"step": 1, "changes": {"training.train_iters": [1, 3]}}]
    (iteration_dir(save, 3) / "primus_bridge.json").write_text(json.dumps({
        "engine": "megatron", "hf_source": "/models/llama", "lora": False, "base_checkpoint": str(tmp_path),
        "tokenizer": "/models/llama", "transformer_impl": "local", "template": "alpaca",
        "config_changes": earlier, "step": 3}))
    resume = _prepare_save_dir(cfg.model_copy(update={"training": cfg.training.model_copy(
        update={"train_iters": 10})}))
    assert resume.step == 3 and resume.marker.base_checkpoint == str(tmp_path)
    assert resume.config_changes == [*earlier, {"step": 3, "changes": {"training.train_iters": [8, 10]}}]
