"""The dataset provider turns the data pipeline's packed rows into the streams finetune() trains on."""

from pathlib import Path

import numpy as np
import pytest
import torch

from primus_bridge.config import PrimusConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_config(tmp_path_factory, tokenizer_dir) -> PrimusConfig:
    from primus_bridge.models.tiny import build_tiny_llama

    folder = tmp_path_factory.mktemp("run")
    hf = build_tiny_llama(tokenizer_dir, folder / "tiny")
    return PrimusConfig.model_validate({
        "hf_model_name_or_path": str(hf), "convert_from_hf": True,
        "data": {"data_path": "examples/data/alpaca_sample.jsonl", "seq_length": 96, "split": "80,20,0",
                 "cache_dir": str(folder / "cache")},
        "training": {"micro_batch_size": 3, "global_batch_size": 6},
    })


@pytest.fixture(scope="module")
def datasets(megatron_cpu, run_config):
    from megatron.bridge.data.base import DatasetBuildContext

    from primus_bridge.engine.megatron.container import dataset_section

    provider = dataset_section(run_config)
    return provider.build_datasets(DatasetBuildContext(train_samples=500, valid_samples=4, test_samples=0))


def test_streams_hold_micro_batch_rows_with_document_boundaries(datasets):
    train, valid, test = datasets
    assert test is None and len(train) == 500 and len(valid) >= 4
    batch = type(train).collate_fn([train[7]])
    assert batch["tokens"].shape == batch["labels"].shape == batch["loss_mask"].shape == (1, 3 * 96)
    cu = batch["cu_seqlens_q"][0]
    assert cu[0] == 0 and cu[-1] == 3 * 96 and torch.all(cu[1:] > cu[:-1])
    assert batch["max_seqlen_q"].item() == int((cu[1:] - cu[:-1]).max())
    starts = cu[:-1].long()
    assert torch.all(batch["position_ids"][0, starts] == 0), "positions restart at every document"
    assert torch.equal(batch["loss_mask"][0] == 1, batch["labels"][0] != -100)


def test_every_row_once_per_epoch_in_a_seeded_order(datasets):
    from primus_bridge.engine.megatron.dataset import PackedStreams

    train = datasets[0]
    rows = len(train.split)
    first_epoch = [train.row_index(i) for i in range(rows)]
    second_epoch = [train.row_index(rows + i) for i in range(rows)]
    assert sorted(first_epoch) == sorted(second_epoch) == list(range(rows))
    assert first_epoch != second_epoch
    again = PackedStreams(train.split, len(train), train.rows_per_stream, train.seed)
    assert [again.row_index(i) for i in range(2 * rows)] == first_epoch + second_epoch


def _local_model(run_config):
    """The tiny model on Megatron's local spec in fp32 on the CPU."""
    from megatron.bridge import AutoBridge

    from primus_bridge.engine.megatron.layer_spec import use_local_spec

    provider = AutoBridge.from_hf_pretrained(run_config.hf_model_name_or_path).to_megatron_provider(load_weights=True)
    use_local_spec(provider)
    provider.params_dtype, provider.bf16 = torch.float32, False
    provider.finalize()
    return provider.provide_distributed_model(wrap_with_ddp=False, use_cpu_initialization=True)


def _token_losses(module, batch) -> torch.Tensor:
    from megatron.bridge.training.utils.packed_seq_utils import get_packed_seq_params

    params = get_packed_seq_params({k: batch[k] for k in ("cu_seqlens_q", "cu_seqlens_kv", "max_seqlen_q",
                                                          "max_seqlen_kv")})
    return module(input_ids=batch["tokens"], position_ids=batch["position_ids"], attention_mask=None,
                  labels=batch["labels"], packed_seq_params=params)


def test_megatron_loss_on_a_stream_equals_hf_loss_per_document(datasets, run_config):
    """Labels are already shifted and documents never see each other: same loss as HF on each document."""
    from transformers import AutoModelForCausalLM

    batch = type(datasets[0]).collate_fn([datasets[0][3]])
    model = _local_model(run_config)[0]
    while hasattr(model, "module"):
        model = model.module
    with torch.no_grad():
        token_losses = _token_losses(model.eval(), batch)
    mask = batch["loss_mask"]
    megatron_loss = (token_losses * mask).sum() / mask.sum()

    hf = AutoModelForCausalLM.from_pretrained(Path(run_config.hf_model_name_or_path), dtype=torch.float32).eval()
    cu = batch["cu_seqlens_q"][0].tolist()
    total, count = 0.0, 0
    with torch.no_grad():
        for start, end in zip(cu[:-1], cu[1:]):
            labels = batch["labels"][0, start:end]
            logits = hf(batch["tokens"][:, start:end]).logits[0]
            total += torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100, reduction="sum").item()
            count += int((labels != -100).sum())
    assert count == int(mask.sum()) > 0
    assert abs(megatron_loss.item() - total / count) < 1e-4


def test_a_graphed_runs_static_stream_gives_the_streams_losses(datasets, run_config):
    """model.cuda_graph's streams: cu_seqlens padded with empty documents, no max_seqlen, and the forward step's
    host bound (cuda_graph.py) in its place: the model's per-token losses are the stream's."""
    from primus_bridge.engine.megatron.cuda_graph import StaticStreamForwardStep
    from primus_bridge.engine.megatron.dataset import PackedStreams

    train = datasets[0]
    static = PackedStreams(train.split, len(train), train.rows_per_stream, train.seed, static_shapes=True)
    batch, fixed = (type(train).collate_fn([streams[3]]) for streams in (train, static))
    total = 3 * 96
    documents = int(batch["cu_seqlens_q"].numel()) - 1
    assert 1 < documents < total and fixed["cu_seqlens_q"].shape == (1, total + 1)
    assert torch.equal(fixed["cu_seqlens_q"][0, :documents + 1], batch["cu_seqlens_q"][0])
    assert torch.all(fixed["cu_seqlens_q"][0, documents:] == total) and "max_seqlen_q" not in fixed
    assert all(torch.equal(fixed[key], batch[key]) for key in ("tokens", "labels", "loss_mask", "position_ids"))
    seen = []
    step = StaticStreamForwardStep(lambda state, batches, model, plan: seen.append(next(batches)), seq_length=96)
    step(None, iter([fixed]), None)
    bounded = seen[0]
    assert bounded["max_seqlen_q"].device.type == "cpu" and int(bounded["max_seqlen_kv"]) == 97 != total

    model = _local_model(run_config)[0]
    while hasattr(model, "module"):
        model = model.module
    with torch.no_grad():
        expected, found = (_token_losses(model.eval(), b) for b in (batch, bounded))
    torch.testing.assert_close(found, expected, rtol=0, atol=1e-6)


def test_rows_whose_lengths_do_not_cover_the_row_are_refused():
    from primus_bridge.data import PackedRow
    from primus_bridge.engine.megatron.dataset import pack_rows

    ids = np.arange(8)
    row = PackedRow(ids, ids, np.ones(8, np.float32), ids, np.array([3, 4], dtype=np.int32))
    with pytest.raises(ValueError, match="seq_lens add up to 7 tokens but the rows hold 8"):
        pack_rows([row])


@pytest.mark.parametrize("use_lora", [False, True])
def test_backward_through_a_packed_stream(datasets, run_config, use_lora):
    """One training step's backward on a stream: finite gradients, on the adapters only for LoRA."""
    from primus_bridge.config.sections.lora import LoraConfig
    from primus_bridge.engine.megatron.lora import build_peft

    batch = type(datasets[0]).collate_fn([datasets[0][0]])
    model = _local_model(run_config)
    if use_lora:
        model = build_peft(LoraConfig(use_lora=True, lora_rank=4, lora_dropout=0.0))(model, training=True)
    module = model[0]
    losses = _token_losses(module.train(), batch)
    ((losses * batch["loss_mask"]).sum() / batch["loss_mask"].sum()).backward()
    with_grad = {name for name, p in module.named_parameters() if p.grad is not None}
    assert with_grad and all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)
    if use_lora:
        assert all(".adapter." in name for name in with_grad)
        assert any("linear_out" in name and module.get_parameter(name).grad.abs().sum() > 0 for name in with_grad)
    else:
        assert with_grad == {name for name, _ in module.named_parameters()}
