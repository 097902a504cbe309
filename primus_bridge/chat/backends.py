"""Generation from prompt token ids: Transformers (default) or vLLM (--backend vllm, when it is installed).

Both take the ids `prompt.py` built (no template applied here, no special tokens added) and stop at the stop
tokens given; greedy decoding unless the sampling settings ask for sampling.
"""

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError
from .model_source import ModelSource, note

BACKENDS = ("transformers", "vllm")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 256
    temperature: float = 0.0
    """0: greedy decoding."""
    top_p: float = 1.0
    top_k: int = 0
    """0: no top-k cut."""
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Reply:
    text: str
    """The generated text, without the token that ended it."""
    token_ids: list[int]
    """Every generated token, the stop token included."""
    finish_reason: str
    """'stop' (a stop token) or 'length' (max_new_tokens reached)."""


def require_backend(name: str) -> None:
    """Refuse a backend that is not installed, before anything is loaded."""
    if name == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ConfigError("--backend vllm: vLLM is not installed in this environment; install it "
                          "(pip install vllm, in a GPU image) or use --backend transformers (the default)")


def _reply(tokenizer, generated: list[int], stops: tuple[int, ...], stopped: bool | None = None) -> Reply:
    """`stopped`: whether a stop token ended it, when the backend says (vLLM); else read from the last token."""
    ends_on_stop = bool(generated) and generated[-1] in stops
    text = tokenizer.decode(generated[:-1] if ends_on_stop else generated, skip_special_tokens=False)
    return Reply(text, generated, "stop" if (ends_on_stop if stopped is None else stopped) else "length")


class TransformersBackend:
    def __init__(self, source: ModelSource, tokenizer, device: str | None, dtype: str):
        import torch
        from transformers import AutoModelForCausalLM

        self.torch, self.tokenizer = torch, tokenizer
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
        model = AutoModelForCausalLM.from_pretrained(source.model, dtype=torch_dtype, local_files_only=True)
        if source.adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(source.adapter))
        self.model = model.to(self.device).eval()

    def _config(self, sampling: Sampling, stops: tuple[int, ...]):
        from transformers import GenerationConfig

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else stops[0]
        knobs = {} if sampling.greedy else {"temperature": sampling.temperature, "top_p": sampling.top_p,
                                            "top_k": sampling.top_k or None}
        return GenerationConfig(max_new_tokens=sampling.max_new_tokens, do_sample=not sampling.greedy,
                                eos_token_id=list(stops), pad_token_id=pad, **knobs)

    def generate(self, prompts: list[list[int]], sampling: Sampling, stops: tuple[int, ...]) -> list[Reply]:
        config, replies = self._config(sampling, stops), []
        for ids in prompts:  # one at a time: no padding, so each prompt is exactly its ids
            input_ids = self.torch.tensor([ids], device=self.device)
            with self.torch.no_grad():
                out = self.model.generate(input_ids=input_ids, attention_mask=self.torch.ones_like(input_ids),
                                          generation_config=config)
            replies.append(_reply(self.tokenizer, out[0, len(ids):].tolist(), stops))
        return replies


class VllmBackend:
    def __init__(self, source: ModelSource, tokenizer, device: str | None, dtype: str, seed: int | None):
        from vllm import LLM

        if device not in (None, "cuda"):
            note(f"--device {device} is ignored by the vllm backend (it places the model itself)")
        options = {"model": source.model, "tokenizer": source.tokenizer, "dtype": dtype, "seed": seed or 0}
        self.lora = None
        if source.adapter is not None:
            from vllm.lora.request import LoRARequest

            rank = json.loads((Path(source.adapter) / "adapter_config.json").read_text()).get("r", 16)
            options |= {"enable_lora": True, "max_lora_rank": rank}
            self.lora = LoRARequest("adapter", 1, str(source.adapter))
        self.llm, self.tokenizer = LLM(**options), tokenizer

    def generate(self, prompts: list[list[int]], sampling: Sampling, stops: tuple[int, ...]) -> list[Reply]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(max_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
                                top_p=sampling.top_p, stop_token_ids=list(stops), skip_special_tokens=False,
                                **({"top_k": sampling.top_k} if sampling.top_k else {}))
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in prompts], params,
                                    lora_request=self.lora, use_tqdm=False)
        return [_reply(self.tokenizer, list(out.outputs[0].token_ids), stops, out.outputs[0].finish_reason == "stop")
                for out in outputs]


def load_backend(name: str, source: ModelSource, tokenizer, device: str | None, dtype: str, seed: int | None):
    if name == "vllm":
        return VllmBackend(source, tokenizer, device, dtype, seed)
    if seed is not None:
        from transformers import set_seed

        set_seed(seed)
    return TransformersBackend(source, tokenizer, device, dtype)
