"""A Megatron model loaded from a HF folder the way the engine converts it (local spec), in fp32 for exact checks.

Shared by the in-process conversion tests and the multi-process worker (both put this folder on sys.path).
"""

import torch


def fp32_megatron_model(hf_folder, **provider_settings):
    """AutoBridge and this rank's model chunks with the HF weights; provider_settings set TP/PP and the like."""
    from megatron.bridge import AutoBridge

    from primus_bridge.engine.megatron.layer_spec import use_local_spec

    bridge = AutoBridge.from_hf_pretrained(str(hf_folder))
    provider = bridge.to_megatron_provider(load_weights=True)
    use_local_spec(provider)
    provider.params_dtype, provider.bf16, provider.fp16 = torch.float32, False, False
    for name, value in provider_settings.items():
        setattr(provider, name, value)
    provider.finalize()
    models = provider.provide_distributed_model(wrap_with_ddp=False, use_cpu_initialization=True)
    return bridge, models


def unwrap(model):
    """The GPTModel inside Megatron's wrappers (Float16Module and the like)."""
    while hasattr(model, "module"):
        model = model.module
    return model
