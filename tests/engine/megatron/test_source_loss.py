"""The validation loss per source of a data mixture on the megatron engine, as the hf engine defines it.

A two-source mixture (arithmetic Q&A, and a word repeated over and over) through the engine's dataset provider; its
valid streams lay rows of both sources end to end. Megatron-Bridge's `evaluate_and_print_results` (what finetune()
runs every eval_interval) with the engine's forward step and callback writes the total and one scalar per source to
TensorBoard; each equals the hf engine's `evaluate` of the same rows with the same weights, the total is unchanged
and the token-weighted mean of the sources, and a source with no evaluated tokens is not logged.
"""

import json
from pathlib import Path

import pytest
import torch
from test_objective import CudaTensorsOnCpu, _megatron_model, _microbatch_calculator, cuda_streams_on_cpu  # noqa: F401

from primus_bridge.config import PrimusConfig

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
SOURCES = ("arith", "echo")
ROWS_PER_STREAM, STREAMS_PER_EVAL, EVAL_ITERS = 3, 2, 2


def _echo_records(folder: Path) -> Path:
    """Records unlike the arithmetic ones: one word repeated."""
    path = folder / "echo.jsonl"
    words = ["zebra", "cobalt", "lantern", "harbor"]
    lines = [json.dumps({"instruction": f"Repeat the word {words[index % 4]}.", "input": "",
                         "output": " ".join([words[index % 4]] * 12)}) for index in range(20)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _config(engine: str, hf_folder: Path, folder: Path) -> PrimusConfig:
    return PrimusConfig.model_validate({
        "engine": engine, "hf_model_name_or_path": str(hf_folder), "convert_from_hf": engine == "megatron",
        "training": {"micro_batch_size": ROWS_PER_STREAM, "global_batch_size": ROWS_PER_STREAM * STREAMS_PER_EVAL,
                     "train_iters": 10, "eval_iters": EVAL_ITERS, "lr_warmup_iters": 0},
        "data": {"data_path": [{"path": str(REPO / "examples/data/alpaca_sample.jsonl"), "name": SOURCES[0]},
                               {"path": str(_echo_records(folder)), "name": SOURCES[1]}],
                 "seq_length": 96, "split": "50,50,0", "cache_dir": str(folder / "cache")},
        "precision": {"bf16": False},
        "parallelism": {"use_distributed_optimizer": False},
    })


@pytest.fixture
def cpu_evaluation(cuda_streams_on_cpu, monkeypatch):  # noqa: F811
    """CPU accommodation: Megatron-Core's timers synchronize CUDA around the evaluation; the CPU has nothing to wait
    for."""
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args, **kwargs: None)


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory, tokenizer_dir):
    from primus_bridge.models.tiny import build_tiny_llama

    return build_tiny_llama(tokenizer_dir, tmp_path_factory.mktemp("hf") / "tiny")


@pytest.fixture(scope="module")
def streams(megatron_cpu, tiny_hf, tmp_path_factory):
    """(train, valid) streams of the engine's dataset provider."""
    from megatron.bridge.data.base import DatasetBuildContext

    from primus_bridge.engine.megatron.container import dataset_section

    cfg = _config("megatron", tiny_hf, tmp_path_factory.mktemp("data"))
    context = DatasetBuildContext(train_samples=4, valid_samples=EVAL_ITERS * STREAMS_PER_EVAL, test_samples=0)
    train, valid, _ = dataset_section(cfg).build_datasets(context)
    return cfg, train, valid


def _evaluate(cfg: PrimusConfig, hf_folder: Path, batches, tmp_path: Path) -> tuple[dict[str, float], dict]:
    """Megatron-Bridge's evaluation as finetune() runs it, with the engine's forward step and callbacks: what it wrote
    to TensorBoard, by tag, and the validation losses the engine's step recorder kept for the run's result."""
    from megatron.bridge.training.callbacks import CallbackManager
    from megatron.bridge.training.eval import evaluate_and_print_results
    from megatron.bridge.training.state import GlobalState
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from primus_bridge.engine.megatron.callbacks import StepRecorder
    from primus_bridge.engine.megatron.dataset import mixture_source_names
    from primus_bridge.engine.megatron.source_loss import DropEmptySources, SourceLossForwardStep

    names = mixture_source_names(cfg)
    callbacks, recorder = CallbackManager(), StepRecorder()
    callbacks.add([DropEmptySources(names), recorder])
    with CudaTensorsOnCpu(), _microbatch_calculator(STREAMS_PER_EVAL):
        _, container, model, *_ = _megatron_model(cfg, hf_folder, tmp_path, per_token_loss=True)
        container.logger.tensorboard_dir = str(tmp_path / "tensorboard")
        state = GlobalState()
        state.cfg = container
        evaluate_and_print_results(state, "iteration 0", SourceLossForwardStep(names), iter(batches), model,
                                   container.model, callback_manager=callbacks)
        state.tensorboard_logger.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    logged = {tag: events.Scalars(tag)[0].value for tag in events.Tags()["scalars"] if tag.endswith(" validation")}
    return logged, recorder.eval_losses


def _hf_losses(cfg: PrimusConfig, hf_folder: Path, split, rows: list[int]) -> tuple[float, list[float | None]]:
    """The hf engine's validation loss of `rows`, in total and per source (one row per batch)."""
    from primus_bridge.engine.hf.batches import make_batch
    from primus_bridge.engine.hf.distributed import DistEnv
    from primus_bridge.engine.hf.model import build_model
    from primus_bridge.engine.hf.precision import choose_precision
    from primus_bridge.engine.hf.step import evaluate

    hf_cfg = cfg.model_copy(update={"engine": "hf", "convert_from_hf": False})
    env = DistEnv(0, 1, 0, torch.device("cpu"))
    loaded = build_model(hf_cfg, env)
    batches = [(int(source), make_batch(split, [row], env.device, loaded.attn_implementation, torch.float32))
               for row, source in zip(rows, split.row_sources(rows))]
    result = evaluate(loaded.model, batches, len(split.source_names), env, choose_precision(hf_cfg, env.device),
                      loaded.logits_to_keep, loaded.fused_loss)
    return result.loss, result.by_source


def _collated(valid, index: int) -> dict[str, torch.Tensor]:
    return type(valid).collate_fn([valid[index]])


def test_only_evaluated_streams_of_a_mixture_carry_source_ids(streams):
    from primus_bridge.engine.megatron.dataset import SOURCE_IDS

    cfg, train, valid = streams
    assert SOURCE_IDS not in train[0], "training streams are what they were"
    assert valid.split.source_names == SOURCES
    for index in range(len(valid)):
        ids = valid[index][SOURCE_IDS]
        rows = [valid.row_index(index * ROWS_PER_STREAM + k) for k in range(ROWS_PER_STREAM)]
        expected = torch.as_tensor(valid.split.row_sources(rows)).repeat_interleave(valid.split.seq_length)
        assert torch.equal(ids.long(), expected)


def test_each_sources_validation_loss_is_the_hf_engines(streams, tiny_hf, cpu_evaluation, tmp_path):
    cfg, _, valid = streams
    evaluated = EVAL_ITERS * STREAMS_PER_EVAL
    rows = [valid.row_index(position) for position in range(evaluated * ROWS_PER_STREAM)]
    mixed = [len(set(valid.split.row_sources(rows[i:i + ROWS_PER_STREAM]).tolist())) > 1
             for i in range(0, len(rows), ROWS_PER_STREAM)]
    assert any(mixed), "a stream holds rows of both sources"
    logged, recorded = _evaluate(cfg, tiny_hf, [_collated(valid, index) for index in range(evaluated)], tmp_path)
    assert recorded == {"0": pytest.approx(logged["lm loss validation"], rel=1e-6)}, "the run's result has it too"
    assert sorted(logged) == ["lm loss validation"] + [f"lm loss/{name} validation" for name in SOURCES]
    hf_total, hf_by_source = _hf_losses(cfg, tiny_hf, valid.split, rows)
    assert logged["lm loss validation"] == pytest.approx(hf_total, rel=1e-5)
    for name, hf_loss in zip(SOURCES, hf_by_source):
        assert logged[f"lm loss/{name} validation"] == pytest.approx(hf_loss, rel=1e-5), name
    tokens = [sum(int(valid.split[row].loss_mask.sum()) for row, of in zip(rows, valid.split.row_sources(rows))
                  if of == source) for source in range(len(SOURCES))]
    by_source = [logged[f"lm loss/{name} validation"] for name in SOURCES]
    assert sum(n * loss for n, loss in zip(tokens, by_source)) / sum(tokens) == \
        pytest.approx(logged["lm loss validation"], rel=1e-5)
    assert abs(by_source[0] - by_source[1]) > 100 * 1e-5 * by_source[0], "the sources' data differ"


def test_training_streams_get_megatron_bridges_loss_unchanged(streams, tiny_hf, cpu_evaluation, tmp_path):
    """The forward step on a training stream returns Megatron-Bridge's own loss function; on a valid stream the
    sources' [loss sum, tokens] add up to the total's, which is what it was."""
    from megatron.bridge.training.losses import masked_next_token_loss
    from megatron.bridge.training.state import GlobalState

    from primus_bridge.engine.megatron.dataset import mixture_source_names
    from primus_bridge.engine.megatron.source_loss import SourceLossForwardStep

    cfg, train, valid = streams
    with CudaTensorsOnCpu(), _microbatch_calculator(STREAMS_PER_EVAL):
        _, container, model, *_ = _megatron_model(cfg, tiny_hf, tmp_path, per_token_loss=True)
        state = GlobalState()
        state.cfg = container
        step = SourceLossForwardStep(mixture_source_names(cfg))
        with torch.no_grad():
            output, loss_func = step(state, iter([_collated(train, 0)]), model[0])
            assert loss_func.func is masked_next_token_loss and set(loss_func(output)[2]) == {"lm loss"}
            output, loss_func = step(state, iter([_collated(valid, 0)]), model[0])
            loss, tokens, reported = loss_func(output)
    assert list(reported) == ["lm loss"] + [f"lm loss/{name}" for name in SOURCES]
    assert torch.equal(reported["lm loss"], torch.stack([loss, tokens.float()]))
    assert torch.allclose(reported["lm loss/arith"] + reported["lm loss/echo"], reported["lm loss"])


def test_a_source_without_evaluated_tokens_is_not_logged(streams, tiny_hf, cpu_evaluation, tmp_path):
    from primus_bridge.engine.megatron.dataset import SOURCE_IDS, pack_rows

    cfg, _, valid = streams
    split = valid.split
    arith = [row for row, source in enumerate(split.row_sources().tolist()) if source == 0]
    chosen = arith[:EVAL_ITERS * STREAMS_PER_EVAL * ROWS_PER_STREAM]
    batches = []
    for first in range(0, len(chosen), ROWS_PER_STREAM):
        stream = pack_rows([split[row] for row in chosen[first:first + ROWS_PER_STREAM]])
        stream[SOURCE_IDS] = torch.zeros_like(stream["tokens"], dtype=torch.int32)
        batches.append(type(valid).collate_fn([stream]))
    logged, _ = _evaluate(cfg, tiny_hf, batches, tmp_path)
    assert sorted(logged) == ["lm loss validation", "lm loss/arith validation"]
    assert logged["lm loss/arith validation"] == pytest.approx(logged["lm loss validation"], rel=1e-6)
