"""The hf engine's W&B (offline) and MLflow (file store) runs: TensorBoard's scalars and the resolved config."""

import sys

import pytest
import yaml

from primus_bridge.config import ConfigError
from primus_bridge.engine import get_engine
from primus_bridge.run.resume_config import config_dump
from primus_bridge.run.trackers import CONFIG_ARTIFACT, CONFIG_KEY

pytestmark = pytest.mark.slow

ENGINE = get_engine("hf")
SECRET = "wandb-key-0123456789"


def tensorboard_scalars(folder) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


WANDB_FLUSH_SECONDS = 20
"""How long to wait for W&B's service to write the run's history to its file: `run.finish()` returned and printed
the history, yet under a loaded test machine (2026-12-06, both CPUs busy) the file read back held none of it."""


def wandb_records(folder) -> tuple[dict, dict[str, dict[int, float]]]:
    """(run config, scalars) read back from the offline run's own record file, once it holds the history."""
    import time

    deadline = time.monotonic() + WANDB_FLUSH_SECONDS
    config, scalars = _wandb_file_records(folder)
    while not scalars and time.monotonic() < deadline:
        time.sleep(0.5)
        config, scalars = _wandb_file_records(folder)
    return config, scalars


def _wandb_file_records(folder) -> tuple[dict, dict[str, dict[int, float]]]:
    import json

    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal.datastore import DataStore

    [path] = folder.glob("wandb/offline-run-*/run-*.wandb")
    store, config, scalars = DataStore(), {}, {}
    store.open_for_scan(str(path))
    while (data := store.scan_data()) is not None:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        updates = record.run.config.update if kind == "run" else record.config.update if kind == "config" else []
        config.update({item.key: json.loads(item.value_json) for item in updates})
        if kind == "history":
            items = {"/".join(item.nested_key) or item.key: json.loads(item.value_json) for item in record.history.item}
            for name, value in items.items():
                if not name.startswith("_"):
                    scalars.setdefault(name, {})[items["_step"]] = value
    return config, scalars


def mlflow_run(store, experiment: str):
    from mlflow import MlflowClient

    client = MlflowClient(store.as_uri())
    [run] = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    scalars = {name: {m.step: m.value for m in client.get_metric_history(run.info.run_id, name)}
               for name in run.data.metrics}
    artifact = client.download_artifacts(run.info.run_id, CONFIG_ARTIFACT, str(store.parent / "artifact"))
    return run, scalars, artifact


def test_offline_wandb_and_a_file_mlflow_store_get_tensorboards_scalars_and_the_config(make_config, tmp_path,
                                                                                        monkeypatch,
                                                                                        restored_environment):
    pytest.importorskip("wandb", reason="the logging extra is not installed (pip install 'primus-bridge[logging]')")
    pytest.importorskip("mlflow", reason="the logging extra is not installed (pip install 'primus-bridge[logging]')")
    for name in ("WANDB_MODE", "WANDB_DIR", "MLFLOW_TRACKING_URI", "MLFLOW_ALLOW_FILE_STORE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    cfg = make_config(train_iters=2, eval_interval=1, tensorboard_dir=str(tmp_path / "tb"))
    cfg.convert_to_hf, cfg.hf_save_path = False, f"/exports/{SECRET}"  # a secret in a config value stays out
    cfg.logging.wandb = cfg.logging.wandb.model_copy(update={"enabled": True, "project": "tiny", "offline": True,
                                                             "dir": str(tmp_path / "wandb-runs")})
    cfg.logging.mlflow = cfg.logging.mlflow.model_copy(update={"enabled": True, "project": "tiny", "offline": True,
                                                               "dir": str(tmp_path / "mlruns"), "run_name": "lora"})
    ENGINE.train(cfg)

    board = tensorboard_scalars(tmp_path / "tb")
    assert set(board) == {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_second", "valid/loss"}
    assert all(set(steps) == {1, 2} for steps in board.values())
    wandb_config, wandb_scalars = wandb_records(tmp_path / "wandb-runs")
    run, mlflow_scalars, artifact = mlflow_run(tmp_path / "mlruns", "tiny")
    for scalars in (wandb_scalars, mlflow_scalars):
        assert scalars.keys() == board.keys()
        for name, steps in board.items():
            assert scalars[name] == pytest.approx(steps, rel=1e-6), name

    resolved = yaml.safe_load(config_dump(cfg))
    assert wandb_config[CONFIG_KEY] == resolved and resolved["hf_save_path"] == "/exports/***"
    assert yaml.safe_load(open(artifact).read()) == resolved
    assert run.info.run_name == "lora" and run.data.params[f"{CONFIG_KEY}.training.train_iters"] == "2"
    assert run.data.params[f"{CONFIG_KEY}.logging.wandb.project"] == "tiny"
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaked == []


def test_training_with_a_tracker_whose_package_is_missing_stops_with_the_fix(make_config, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what Python sees when mlflow is not installed
    cfg = make_config(train_iters=1)
    cfg.convert_to_hf = False
    cfg.logging.mlflow = cfg.logging.mlflow.model_copy(update={"enabled": True, "project": "tiny"})
    with pytest.raises(ConfigError, match=r"logging\.mlflow\.enabled: the mlflow package is not installed in this "
                                          r"environment; install it \(pip install 'primus-bridge\[logging\]'\)"):
        ENGINE.train(cfg)
