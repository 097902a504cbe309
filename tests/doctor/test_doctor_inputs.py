"""The config's inputs: data path, HF model (folder or cached hub id), Megatron checkpoint."""

import pytest
from huggingface_hub import constants

from primus_bridge.doctor.inputs import data_path_check, hf_model_check, load_check
from primus_bridge.doctor.report import Status


def test_data_path(tmp_path):
    assert data_path_check(None).status is Status.WARN
    assert data_path_check(str(tmp_path / "missing")).status is Status.FAIL
    empty = data_path_check(str(tmp_path))
    assert empty.status is Status.FAIL and "holds no .json, .jsonl, .parquet files" in empty.detail
    (tmp_path / "part").mkdir()
    (tmp_path / "part" / "a.jsonl").write_text('{"instruction": "hi", "output": "hello"}\n')
    (tmp_path / "b.json").write_text("[]")
    (tmp_path / "notes.txt").write_text("ignored")
    folder = data_path_check(str(tmp_path))
    assert folder.status is Status.PASS and "2 file(s)" in folder.detail
    assert data_path_check(str(tmp_path / "b.json")).status is Status.PASS


def make_model(folder, weights=True):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    if weights:
        (folder / "model.safetensors").write_bytes(b"\0" * 8)
    return folder


def test_local_hf_model(tmp_path):
    assert hf_model_check(None).status is Status.SKIP
    assert hf_model_check(str(make_model(tmp_path / "full"))).status is Status.PASS
    no_weights = hf_model_check(str(make_model(tmp_path / "config-only", weights=False)))
    assert no_weights.status is Status.FAIL and "no weights" in no_weights.detail
    (tmp_path / "empty").mkdir()
    assert "no config.json" in hf_model_check(str(tmp_path / "empty")).detail


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_hub_id_must_be_in_the_local_cache(hf_cache):
    missing = hf_model_check("acme/tiny-llama")
    assert missing.status is Status.FAIL and str(hf_cache) in missing.detail and "hf download" in missing.fix
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = hf_cache / "models--acme--tiny-llama"
    make_model(repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    cached = hf_model_check("acme/tiny-llama")
    assert cached.status is Status.PASS and revision in cached.detail


def test_not_a_folder_and_not_a_hub_id(hf_cache):
    check = hf_model_check("/models/not here")
    assert check.status is Status.FAIL and "neither a folder nor a hub id" in check.detail


def test_megatron_checkpoint(tmp_path):
    assert load_check(None).status is Status.SKIP
    assert load_check(str(tmp_path / "missing")).status is Status.FAIL
    assert load_check(str(tmp_path)).status is Status.FAIL
    (tmp_path / "iter_0000100").mkdir()
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("100")
    check = load_check(str(tmp_path))
    assert check.status is Status.PASS and check.detail.endswith("iter_0000100")
