"""Shared test setup: `gpu`-marked tests are skipped where no GPU is visible; each test starts with the project
logger as it found it; under pytest-xdist (`make test` runs two workers) the long modules start first."""

import logging
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SLURM_MODULE = "tests/slurm/test_sbatch.py"
"""The one module that submits jobs to the local SLURM cluster: `--dist loadfile` runs a module on one worker, so
its jobs run one after another and never wait on each other's CPUs."""


def _one_thread_per_xdist_worker() -> None:
    """With several xdist workers on as many cores, torch's default (one intra-op thread per core) in every worker
    and in every process a test starts oversubscribes the cores, and OpenMP's spinning threads then slow each other
    down many times over on a busy machine. One thread each (an OMP_NUM_THREADS set by the caller wins); set before
    any test module imports torch, and inherited by the processes the tests start."""
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
        os.environ.setdefault("OMP_NUM_THREADS", "1")


_one_thread_per_xdist_worker()


def _gpu_visible() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _module(item) -> str:
    return item.nodeid.split("::", 1)[0]


def _order_modules_for_xdist(items) -> None:
    """`make test` runs `--dist loadfile --no-loadscope-reorder`: every module goes to one worker as a whole (its
    module fixtures are built once), in collection order. The SLURM module goes first, then the modules holding
    `slow` tests, so the long ones start early and the short unit-test modules fill in at the end."""
    slurm_modules = sorted({_module(item) for item in items if "slurm_cluster" in getattr(item, "fixturenames", ())})
    if slurm_modules not in ([], [SLURM_MODULE]):
        raise pytest.UsageError(f"tests submitting SLURM jobs belong in {SLURM_MODULE} (one worker runs them one "
                                f"after another); found in {', '.join(slurm_modules)}")
    slow_modules = {_module(item) for item in items if "slow" in item.keywords}
    rank = {module: 1 for module in slow_modules} | {SLURM_MODULE: 0}
    items.sort(key=lambda item: rank.get(_module(item), 2))  # stable: the order within a module is kept


@pytest.hookimpl(tryfirst=True)  # before pytest's own reordering by fixture parameters, which stays within a module
def pytest_collection_modifyitems(config, items):
    if hasattr(config, "workerinput"):  # an xdist worker: the workers' collections decide the schedule
        _order_modules_for_xdist(items)
    if _gpu_visible():
        return
    skip = pytest.mark.skip(reason="needs a GPU (CUDA or ROCm); run on the GPU machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session", autouse=True)
def tiny_model_built_once(request) -> None:
    """The `tiny_model` fixtures (tests/launch, tests/slurm) share the tiny Llama in the repo's .cache. Two xdist
    workers must not build it at the same time (each would rename its build into place): the first builds it under
    a file lock, the other then finds it built."""
    if not any("tiny_model" in getattr(item, "fixturenames", ()) for item in request.session.items):
        return
    from filelock import FileLock

    from primus_bridge.models.tiny import DEFAULT_CACHE, ensure_tiny_llama

    cache = REPO / DEFAULT_CACHE
    cache.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(cache.with_name(f"{cache.name}.lock")):
        ensure_tiny_llama(REPO / "examples" / "tokenizer", cache)


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
