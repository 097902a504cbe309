"""The hf engine's objective: a step's loss is the mean cross-entropy over its trained tokens, each micro batch
counting by its trained tokens (accumulation equals one batch); the optimizer steps on that mean's gradient.
Across DDP ranks the same holds: test_hf_ddp.py trains two processes exactly like one."""

import numpy as np
import torch

from primus_bridge.data.packed import IGNORE_INDEX, PackedRow

SEQ_LENGTH = 64


def _row(lengths, trained, vocab: int, generator: np.random.Generator) -> PackedRow:
    """Documents of random tokens, each training its last `trained` next-token targets; padded to SEQ_LENGTH."""
    input_ids, labels = np.zeros(SEQ_LENGTH, np.int64), np.full(SEQ_LENGTH, IGNORE_INDEX, np.int64)
    position_ids, start = np.zeros(SEQ_LENGTH, np.int64), 0
    for length, count in zip(lengths, trained):
        ids = generator.integers(0, vocab, length)
        input_ids[start:start + length], position_ids[start:start + length] = ids, np.arange(length)
        labels[start + length - 1 - count:start + length - 1] = ids[length - count:]
        start += length
    position_ids[start:] = np.arange(SEQ_LENGTH - start)
    seq_lens = np.array([*lengths, SEQ_LENGTH - start], np.int32)
    return PackedRow(input_ids, labels, (labels != IGNORE_INDEX).astype(np.float32), position_ids, seq_lens)


def test_a_step_is_the_mean_over_its_trained_tokens(make_config):
    from primus_bridge.engine.hf.batches import make_batch
    from primus_bridge.engine.hf.distributed import DistEnv
    from primus_bridge.engine.hf.model import build_model
    from primus_bridge.engine.hf.optim import build_optimizer, build_scheduler
    from primus_bridge.engine.hf.precision import choose_precision
    from primus_bridge.engine.hf.step import train_step

    cfg = make_config(lora=False, micro_batch_size=1, global_batch_size=2, clip_grad=0.0)
    env = DistEnv(0, 1, 0, torch.device("cpu"))
    loaded = build_model(cfg, env)
    generator = np.random.default_rng(3)
    vocab = loaded.model.config.vocab_size
    rows = [_row((30, 28), (26, 24), vocab, generator), _row((40, 20), (3, 2), vocab, generator)]  # 50 and 5
    batches = [make_batch(rows, [index], env.device, loaded.attn_implementation, torch.float32) for index in (0, 1)]

    reference = build_model(cfg, env).model  # the same weights; one batch of both rows, PyTorch's token mean
    logits = torch.cat([reference(**batch.model_inputs()).logits for batch in batches], dim=1)
    labels = torch.cat([batch.labels for batch in batches], dim=1)
    expected_loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    expected_loss.backward()
    expected = {name: param.grad for name, param in reference.named_parameters()}

    optimizer = build_optimizer(loaded.model, cfg)
    names = {param: name for name, param in loaded.model.named_parameters()}
    stepped = {}
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: stepped.update(
        {names[p]: p.grad.clone() for group in opt.param_groups for p in group["params"]}))
    stats = train_step(loaded.model, optimizer, build_scheduler(optimizer, cfg), batches, env,
                       choose_precision(cfg, env.device), cfg.training.clip_grad, loaded.logits_to_keep)

    assert stats.trained_tokens == 55
    assert abs(stats.loss - expected_loss.item()) < 1e-5 * expected_loss.item()
    assert sorted(stepped) == sorted(expected)
    for name, grad in expected.items():
        torch.testing.assert_close(stepped[name], grad, rtol=1e-4, atol=1e-7)
    expected_norm = torch.cat([g.flatten() for g in expected.values()]).norm()
    assert abs(stats.grad_norm - expected_norm.item()) < 1e-4 * expected_norm.item()
