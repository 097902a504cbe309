"""Damaged weight and state files are found by cheap checks that name the file."""

import os

import pytest
import torch
from safetensors.torch import save_file

from primus_bridge.checkpoint.integrity import (
    file_holding,
    safetensors_problem,
    torch_dist_problems,
    torch_file_problem,
    weight_folder_problems,
    zip_problem,
)


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"model.embed.weight": torch.randn(64, 32), "model.norm.weight": torch.ones(32)}, str(path))
    return path


@pytest.mark.parametrize("damage", ["truncated", "empty", "random bytes"])
def test_a_damaged_safetensors_file_is_named(weights, damage):
    assert safetensors_problem(weights) is None and weight_folder_problems(weights.parent) == []
    if damage == "truncated":
        os.truncate(weights, weights.stat().st_size // 2)
    else:
        weights.write_bytes(b"" if damage == "empty" else os.urandom(4096))
    problem = safetensors_problem(weights)
    assert problem.startswith(f"{weights}: damaged or not a safetensors file")
    assert weight_folder_problems(weights.parent) == [problem]


def test_a_truncated_torch_file_is_named(tmp_path):
    path = tmp_path / "optimizer.pt"
    torch.save({"state": {0: {"exp_avg": torch.randn(1000)}}, "param_groups": []}, path)
    assert torch_file_problem(path) is None
    os.truncate(path, path.stat().st_size - 200)
    assert torch_file_problem(path).startswith(f"{path}: damaged or not a torch file")
    assert torch_file_problem(tmp_path / "absent.pt") == f"{tmp_path / 'absent.pt'}: missing"


def test_a_torch_file_whose_zip_directory_is_gone_is_named_without_unpickling(tmp_path):
    path = tmp_path / "common.pt"
    torch.save({"args": object.__name__, "iteration": 4}, path)
    assert zip_problem(path) is None
    os.truncate(path, path.stat().st_size - 30)
    assert zip_problem(path).startswith(f"{path}: damaged or not a torch file")
    assert zip_problem(tmp_path / "absent.pt") == f"{tmp_path / 'absent.pt'}: missing"


def test_a_torch_dist_checkpoint_with_a_truncated_or_missing_data_file_is_named(tmp_path):
    import torch.distributed.checkpoint as dcp

    dcp.save({"decoder.weight": torch.randn(64, 32), "decoder.bias": torch.randn(32)}, checkpoint_id=tmp_path,
             no_dist=True)
    assert torch_dist_problems(tmp_path) == []
    data = next(tmp_path.glob("*.distcp"))
    size = data.stat().st_size
    os.truncate(data, size - 1)
    assert torch_dist_problems(tmp_path) == [f"{data}: truncated ({size - 1} of {size} bytes)"]
    data.unlink()
    assert torch_dist_problems(tmp_path) == [f"{data}: missing"]
    (tmp_path / ".metadata").write_bytes(b"")
    assert torch_dist_problems(tmp_path)[0].startswith(f"{tmp_path / '.metadata'}: missing or damaged")


def test_the_file_holding_a_wrapped_parameter(weights):
    found = file_holding(weights.parent, "base_model.model.model.embed.weight")
    assert found == (weights, "model.embed.weight")
    assert file_holding(weights.parent, "lm_head.weight") is None
