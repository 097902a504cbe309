"""`logging:` (W&B, MLflow): off by default, checked keys, settings for both engines, secrets kept out."""

import sys
from pathlib import Path

import pytest
import yaml

from primus_bridge.config import ConfigError, PrimusConfig
from primus_bridge.config.layers import Layer
from primus_bridge.config.resolve import resolve
from primus_bridge.run.resume_config import config_changes, config_dump
from primus_bridge.run.trackers import (
    enabled_trackers,
    import_tracker,
    missing_package_problems,
    mlflow_params,
    mlflow_tracking_uri,
    resolved_config,
    run_name,
    tracker_environment,
    tracker_folders,
    wandb_dir,
)


def config(**logging) -> PrimusConfig:
    return resolve([Layer("test", {"logging": logging, "checkpointing": {"save": "/runs/sft-7/checkpoints"}})])[0]


def test_trackers_are_off_by_default():
    cfg = config()
    assert enabled_trackers(cfg) == [] and tracker_environment(cfg) == {} and tracker_folders(cfg) == []
    assert missing_package_problems(cfg) == []


@pytest.mark.parametrize(("logging", "message"), [
    ({"wandb": {"enabled": True}}, "logging.wandb.project: required when logging.wandb.enabled is true"),
    ({"mlflow": {"enabled": True}}, "logging.mlflow.project: required when logging.mlflow.enabled is true"),
    ({"mlflow": {"tracking_uri": "https://me:hunter2@mlflow.example.com"}},
     "logging.mlflow.tracking_uri: holds a password; remove it from the URI and set MLFLOW_TRACKING_USERNAME"),
    ({"mlflow": {"offline": True, "tracking_uri": "http://mlflow:5000"}},
     "logging.mlflow.offline: true and logging.mlflow.tracking_uri are both set"),
    ({"wandb": {"api_key": "x"}}, "logging.wandb.api_key: unknown key"),
])
def test_bad_settings_name_the_key_and_the_fix(logging, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        config(**logging)


def test_names_folders_and_environment_of_offline_trackers(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    cfg = config(wandb={"enabled": True, "project": "p", "offline": True},
                 mlflow={"enabled": True, "project": "p", "offline": True, "dir": str(tmp_path / "store"),
                         "run_name": "first"})
    assert run_name(cfg, cfg.logging.wandb) == "checkpoints" and run_name(cfg, cfg.logging.mlflow) == "first"
    assert wandb_dir(cfg.logging.wandb) == "."
    assert mlflow_tracking_uri(cfg.logging.mlflow) == (tmp_path / "store").as_uri()  # offline beats the variable
    assert tracker_environment(cfg) == {"WANDB_MODE": "offline", "MLFLOW_ALLOW_FILE_STORE": "true"}
    assert tracker_folders(cfg) == [("logging.wandb.dir", "."), ("logging.mlflow.dir", str(tmp_path / "store"))]


def test_a_tracking_server_comes_from_the_config_or_the_environment(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env:5000")
    online = config(mlflow={"enabled": True, "project": "p"})
    assert mlflow_tracking_uri(online.logging.mlflow) == "http://from-env:5000"
    assert tracker_environment(online) == {} and tracker_folders(online) == []
    named = config(mlflow={"enabled": True, "project": "p", "tracking_uri": "http://mlflow:5000"})
    assert mlflow_tracking_uri(named.logging.mlflow) == "http://mlflow:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    local = config(mlflow={"enabled": True, "project": "p"})
    assert mlflow_tracking_uri(local.logging.mlflow) == Path("mlruns").resolve().as_uri()


@pytest.mark.parametrize("package", ["wandb", "mlflow"])
def test_a_missing_package_is_a_clear_error(package, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)  # what Python sees when the package is not installed
    cfg = config(**{package: {"enabled": True, "project": "p"}})
    expected = (f"logging.{package}.enabled: the {package} package is not installed in this environment; install it "
                f"(pip install 'primus-bridge[logging]') or set logging.{package}.enabled: false")
    assert missing_package_problems(cfg) == [expected]
    with pytest.raises(ConfigError) as raised:
        import_tracker(package)
    assert raised.value.messages == [expected]


def test_the_attached_config_is_the_resolved_one_with_secrets_redacted(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "wandb-key-0123456789")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "mlflow-token-0123456789")
    cfg = config(wandb={"enabled": True, "project": "p"})
    cfg.hf_save_path = "wandb-key-0123456789"  # a secret that slipped into a config value
    cfg.data.cache_dir = "/cache/mlflow-token-0123456789"
    attached = resolved_config(cfg)
    assert attached == yaml.safe_load(config_dump(cfg)) and attached["logging"]["wandb"]["project"] == "p"
    assert attached["hf_save_path"] == "***" and attached["data"]["cache_dir"] == "/cache/***"
    params = mlflow_params(cfg)
    assert params["primus_bridge.training.lr"] == str(cfg.training.lr) and params["primus_bridge.hf_save_path"] == "***"
    assert not any("0123456789" in value for value in params.values())


def test_a_resumed_run_may_change_its_trackers():
    refused, honoured = config_changes(resolved_config(config()),
                                       config(wandb={"enabled": True, "project": "p", "offline": True}))
    assert refused == {} and honoured["logging.wandb.enabled"] == (False, True)
