"""Megatron-Bridge's LoggerConfig carries the `logging:` trackers (its own W&B / MLflow writers log the scalars)."""

import os

import pytest

from primus_bridge.config import PrimusConfig


def test_trackers_off_leave_the_library_defaults(megatron_cpu):
    from primus_bridge.engine.megatron.container import logger_section

    logger = logger_section(PrimusConfig())
    assert (logger.wandb_project, logger.mlflow_experiment) == (None, None)


def test_offline_trackers_reach_the_library_settings(megatron_cpu, tmp_path, restored_environment):
    pytest.importorskip("mlflow", reason="the logging extra is not installed (pip install 'primus-bridge[logging]')")
    from primus_bridge.engine.megatron.container import logger_section

    cfg = PrimusConfig.model_validate({
        "checkpointing": {"save": str(tmp_path / "sft-1")},
        "logging": {"wandb": {"enabled": True, "project": "p", "entity": "team", "offline": True,
                              "dir": str(tmp_path / "wandb")},
                    "mlflow": {"enabled": True, "project": "e", "offline": True, "dir": str(tmp_path / "mlruns")}}})
    logger = logger_section(cfg)
    logger.finalize()  # the library's own checks (run name set, mlflow importable)
    assert (logger.wandb_project, logger.wandb_exp_name, logger.wandb_entity, logger.wandb_save_dir) == \
        ("p", "sft-1", "team", str(tmp_path / "wandb"))
    assert (logger.mlflow_experiment, logger.mlflow_run_name, logger.mlflow_tracking_uri) == \
        ("e", "sft-1", (tmp_path / "mlruns").as_uri())
    assert logger.mlflow_log_artifacts is False  # no checkpoint copies in the tracking store
    assert os.environ["WANDB_MODE"] == "offline" and os.environ["MLFLOW_ALLOW_FILE_STORE"] == "true"
    assert (tmp_path / "wandb").is_dir()
