"""A tiny Megatron LoRA model (all seven projections adapted) and one packed 3-document stream, for tests
that compare one forward+backward under two code paths."""

import torch

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LENGTHS = [5, 11, 16]


def tiny_lora_model(tokenizer_dir, out, lora_dropout: float | None, cross_entropy_fusion: bool = True) -> list:
    """[GPTModel] in training mode; every adapter's B is non-zero so every adapter gradient is. Without
    LoRA (lora_dropout None) every parameter trains."""
    from megatron.bridge import AutoBridge

    from primus_bridge.config.sections.lora import LoraConfig
    from primus_bridge.engine.megatron.layer_spec import use_local_spec
    from primus_bridge.engine.megatron.lora import build_peft
    from primus_bridge.models.tiny import build_tiny_llama

    provider = AutoBridge.from_hf_pretrained(str(build_tiny_llama(tokenizer_dir, out))
                                             ).to_megatron_provider(load_weights=False)
    use_local_spec(provider)
    provider.cross_entropy_loss_fusion = cross_entropy_fusion
    provider.finalize()
    model = provider.provide_distributed_model(wrap_with_ddp=False, use_cpu_initialization=True)
    if lora_dropout is None:
        model[0].train()
        return model
    model = build_peft(LoraConfig(use_lora=True, lora_rank=4, lora_dropout=lora_dropout,
                                  lora_target_modules=ALL_LINEAR))(model, training=True)
    for name, param in model[0].named_parameters():
        if "linear_out" in name:  # B starts at zero
            torch.nn.init.normal_(param, std=0.02)
    model[0].train()
    return model


def packed_stream() -> dict:
    """Forward keyword arguments: 32 tokens in three documents, labels the next token."""
    from megatron.bridge.training.utils.packed_seq_utils import get_packed_seq_params

    cu = torch.tensor([0, *torch.tensor(LENGTHS).cumsum(0).tolist()], dtype=torch.int32)
    tokens = torch.randint(0, 100, (1, sum(LENGTHS)), generator=torch.Generator().manual_seed(3))
    return {"input_ids": tokens, "labels": tokens.roll(-1, 1), "attention_mask": None,
            "position_ids": torch.cat([torch.arange(n) for n in LENGTHS])[None],
            "packed_seq_params": get_packed_seq_params({"cu_seqlens_q": cu, "cu_seqlens_kv": cu,
                                                        "max_seqlen_q": max(LENGTHS),
                                                        "max_seqlen_kv": max(LENGTHS)})}


def loss_and_grads(gpt, stream: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor], str]:
    """(per-token loss, trainable parameters' gradients, the loss's autograd node); same dropout masks each call."""
    torch.manual_seed(5)
    loss = gpt(**stream)
    loss.sum().backward()
    grads = {n: p.grad.clone() for n, p in gpt.named_parameters() if p.requires_grad}
    gpt.zero_grad(set_to_none=True)
    return loss.detach(), grads, type(loss.grad_fn).__name__
