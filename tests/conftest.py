"""Shared test setup: `gpu`-marked tests are skipped where no GPU is visible; each test starts with the project
logger as it found it."""

import logging
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


@pytest.fixture(autouse=True)
def project_logger_as_found():
    """An in-process run calls setup_logging(), whose handler writes to the sys.stdout of that moment (a test's
    capture, closed once the test ends); undo it after each test so no later test logs into a closed stream."""
    logger = logging.getLogger("primus_bridge")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


@pytest.fixture
def restored_environment():
    """A test whose code sets process environment variables (e.g. WANDB_MODE, MLFLOW_ALLOW_FILE_STORE): the next
    test starts without them."""
    import os

    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
