"""The pipeline's output for fixed inputs is pinned: every cached array (token ids, label spans, document and row
offsets, ordinals) and the report's counts hash to the digests below. A change that alters one token id, one
label position or one packing boundary fails here; a pure speed change must leave them as they are (when a
rendering or masking rule changes on purpose, bump PIPELINE_VERSION in data/cache.py and update the digests).
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from primus_bridge.data import prepare_data
from primus_bridge.data.cache import load_cache
from primus_bridge.data.synthetic import synthetic_alpaca, synthetic_chats, write_jsonl

from pipeline_helpers import REPO

ALPACA = REPO / "examples/data/alpaca_sample.jsonl"
SHAREGPT = REPO / "examples/data/sharegpt_sample.jsonl"
REPORT_COUNTS = ("records_read", "samples_kept", "skipped", "dropped", "truncated", "tokens", "trainable_tokens",
                 "packing_efficiency", "splits", "length_histogram")

CASES = {
    "alpaca-alpaca-packed": (ALPACA, {"prompt_template": "alpaca"}),
    "alpaca-alpaca-short": (ALPACA, {"prompt_template": "alpaca", "seq_length": 48}),
    "alpaca-chatml-tiny": (ALPACA, {"prompt_template": "chatml", "seq_length": 16}),
    "alpaca-chatml-prompt": (ALPACA, {"prompt_template": "chatml", "train_on_prompt": True, "packing": False}),
    "sharegpt-chatml": (SHAREGPT, {"chat_format": "chatml"}),
    "sharegpt-chatml-history": (SHAREGPT, {"chat_format": "chatml", "mask_history": True, "seq_length": 40}),
    "sharegpt-qwen25-prompt-history": (SHAREGPT, {"chat_format": "qwen2.5", "train_on_prompt": True,
                                                  "mask_history": True}),
    "sharegpt-llama31": (SHAREGPT, {"chat_format": "llama3.1", "packing": False}),
    "sharegpt-mistral-short": (SHAREGPT, {"chat_format": "mistral", "seq_length": 32}),
    "sharegpt-tokenizer": (SHAREGPT, {"chat_format": "tokenizer"}),
    "mixture-chatml": (None, {"prompt_template": "chatml", "chat_format": "chatml"}),
    "synthetic-alpaca": ("synthetic", {"prompt_template": "alpaca", "seq_length": 512}),
    "chats-chatml": ("chats", {"chat_format": "chatml", "seq_length": 1024}),
    "chats-llama3-history": ("chats", {"chat_format": "llama3", "mask_history": True, "seq_length": 2048}),
}
EXPECTED = {
    "alpaca-alpaca-packed": "d66cdcebb680bb9a3f9d472f45c19e8321bd290fa849184f55690d635b1262e2",
    "alpaca-alpaca-short": "868329acff9baeb1f187e813a92d5579b5ecaed5746f0d064ad45735fc2e0d2d",
    "alpaca-chatml-prompt": "db03f8ca4fc5d8252eb83f0575558bbea0a61ee1d03c99d7c5217211cc4919b3",
    "alpaca-chatml-tiny": "f034b4287d46def2235834573260c65309d6c13d29b93733a7b709dcd6d90b46",
    "chats-chatml": "d5c28d17ec00b4b3036d20db23f99a2fe750f58d367c0af9aa999fd5f252f670",
    "chats-llama3-history": "e72591a5764d6d0b13097f9a7f73526fae74303e09367d112c0d7360e94830cb",
    "mixture-chatml": "3963840031c4b0cda9abe633c30a93f389572592eef877d4fa79f34775a7a523",
    "sharegpt-chatml": "57942f5185a6f925ba8b46923dba8d160128dcf6054123df086cc6d61fcc5311",
    "sharegpt-chatml-history": "815704970915816f3eeb90f8c287b987c5439b873b9eedddd79da7d1b3b2b9f8",
    "sharegpt-llama31": "30f3185d6a5c619239e3627313364a7756f2df35764e3dcc9958a8c271ff23cb",
    "sharegpt-mistral-short": "9e4401eae5d60cd48c1c2da5ddc59c4c04851cd6cef5c07156244e60b49f58fa",
    "sharegpt-qwen25-prompt-history": "1ffc4abdbb2d871a7259fe0efdd726b8baffab2ef42fb5833010876f77aa5da3",
    "sharegpt-tokenizer": "57942f5185a6f925ba8b46923dba8d160128dcf6054123df086cc6d61fcc5311",
    "synthetic-alpaca": "bea05174e155cfa7b2f80589ee6f7cc2fd4766ad912b81eb3cad89b31e50e4de",
}


def fingerprint(cfg, tokenizer) -> str:
    """sha256 over every array the cache holds (name, dtype, shape, bytes) and the report's counts."""
    data = prepare_data(cfg, tokenizer)
    arrays, meta = load_cache(Path(data.report.cache_dir))
    digest = hashlib.sha256()
    for name in sorted(arrays):
        values = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{values.dtype.str}:{values.shape}".encode())
        digest.update(values.tobytes())
    counts = {key: meta["report"][key] for key in REPORT_COUNTS}
    digest.update(json.dumps([counts, meta["seq_length"], meta["pad_id"]], sort_keys=True).encode())
    return digest.hexdigest()


@pytest.mark.parametrize("case", sorted(CASES))
def test_pipeline_output_is_unchanged(case, make_cfg, tokenizer, tmp_path):
    path, data = CASES[case]
    if path == "synthetic":
        path = write_jsonl(tmp_path / "synthetic.jsonl", synthetic_alpaca(3000, seed=7))
    if path == "chats":
        path = write_jsonl(tmp_path / "chats.jsonl", synthetic_chats(300, seed=3))
    cfg = make_cfg(path or f"{ALPACA}:0.6,{SHAREGPT}:0.4", **{"split": "90,5,5"} | data)
    assert fingerprint(cfg, tokenizer) == EXPECTED[case]
