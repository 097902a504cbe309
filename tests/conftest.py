"""Shared test setup: `gpu`-marked tests are skipped where no GPU is visible."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _gpu_visible() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if _gpu_visible():
        return
    skip = pytest.mark.skip(reason="needs a GPU (CUDA or ROCm); run on the GPU machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def repo() -> Path:
    return REPO
