"""Fixtures for the data-pipeline tests: the project tokenizer and configs pointing at a tmp cache."""

import pytest

from primus_bridge.config import PrimusConfig
from pipeline_helpers import TOKENIZER_DIR


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))


@pytest.fixture
def make_cfg(tmp_path):
    """make_cfg(data_path, **data_keys) -> PrimusConfig using the project tokenizer and a tmp cache."""

    def make(data_path, **data) -> PrimusConfig:
        values = {"data_path": str(data_path), "cache_dir": str(tmp_path / "cache"), "seq_length": 256} | data
        return PrimusConfig.model_validate({"model": {"tokenizer": str(TOKENIZER_DIR)}, "data": values})

    return make
