"""Fixtures for the launcher tests."""

import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The tiny Llama the CPU demo fine-tunes (built once into the repo's .cache)."""
    from primus_bridge.models.tiny import DEFAULT_CACHE, ensure_tiny_llama

    folder, _ = ensure_tiny_llama(REPO / "examples" / "tokenizer", REPO / DEFAULT_CACHE)
    return folder
