"""Random-number-generator state of one process (python, numpy, torch CPU and CUDA), for exact resume.

Stored as plain JSON (lists of ints) so that loading a checkpoint never unpickles anything.
"""

import random
from dataclasses import asdict, dataclass

import numpy as np
import torch


@dataclass
class RngState:
    python: list
    numpy: dict
    torch_cpu: list[int]
    torch_cuda: list[list[int]] | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "RngState":
        return cls(**data)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _bytes(state: torch.Tensor) -> list[int]:
    return state.tolist()


def _tensor(values: list[int]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.uint8)


def capture_rng() -> RngState:
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    np_state = {**np_state, "state": {"key": np_state["state"]["key"].tolist(), "pos": int(np_state["state"]["pos"])}}
    cuda = [_bytes(s) for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else None
    return RngState([version, list(internal), gauss], np_state, _bytes(torch.get_rng_state()), cuda)


def restore_rng(state: RngState) -> None:
    version, internal, gauss = state.python
    random.setstate((version, tuple(internal), gauss))
    np_state = dict(state.numpy)
    np_state["state"] = {"key": np.asarray(np_state["state"]["key"], dtype=np.uint32), "pos": np_state["state"]["pos"]}
    np.random.set_state(np_state)
    torch.set_rng_state(_tensor(state.torch_cpu))
    if state.torch_cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_tensor(s) for s in state.torch_cuda])
