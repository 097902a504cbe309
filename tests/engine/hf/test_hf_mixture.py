"""The hf engine on a data mixture: validation loss in total and per source (valid/loss/<source>)."""

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from primus_bridge.engine import get_engine

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]


def test_validation_loss_is_reported_per_source(make_config, tmp_path):
    cfg = make_config(chat=True, train_iters=2, eval_interval=1, eval_iters=2, tensorboard_dir=str(tmp_path / "tb"))
    cfg.convert_to_hf = False
    cfg.data.data_path = [
        {"path": str(REPO / "examples/data/sharegpt_sample.jsonl"), "weight": 0.5, "name": "chat"},
        {"path": str(REPO / "examples/data/alpaca_sample.jsonl"), "weight": 0.5, "name": "instruct",
         "dataset_format": "alpaca"},
    ]
    result = get_engine("hf").train(cfg)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    scalars = {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    assert {"valid/loss", "valid/loss/chat", "valid/loss/instruct"} <= set(scalars), sorted(scalars)
    logged = [result.extra["eval_losses"][str(step)] for step in (1, 2)]
    assert scalars["valid/loss"] == pytest.approx(logged, rel=1e-6), "TensorBoard keeps float32"
    for total, chat, instruct in zip(scalars["valid/loss"], scalars["valid/loss/chat"], scalars["valid/loss/instruct"]):
        assert min(chat, instruct) < total < max(chat, instruct), "the total is the token-weighted mean of the two"
