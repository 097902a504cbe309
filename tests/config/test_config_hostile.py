"""Hostile config files produce a ConfigError with a clear message: never a traceback, never a hang."""

import argparse
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from primus_bridge.config import ConfigError, add_config_arguments, load_config

SETTINGS = settings(max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])


def load_file(path) -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    load_config(parser.parse_args(["--config", str(path)]))


def only_config_errors(path) -> None:
    try:
        load_file(path)
    except ConfigError as err:
        assert err.messages and all(m.strip() for m in err.messages)


@SETTINGS
@given(st.binary(max_size=400))
def test_random_bytes(tmp_path, data):
    path = tmp_path / "c.yaml"
    path.write_bytes(data)
    only_config_errors(path)


yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=50))
yaml_trees = st.recursive(yaml_scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=12), kids, max_size=4)), max_leaves=20)
sections = ["training", "data", "lora", "model", "parallelism", "precision", "checkpointing", "profiling"]


@SETTINGS
@given(st.dictionaries(st.sampled_from(sections + ["framework", "x"]), yaml_trees, max_size=4))
def test_wrong_types_in_real_sections(tmp_path, tree):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True))
    only_config_errors(path)


@SETTINGS
@given(st.text(max_size=300))
def test_truncated_valid_config(tmp_path, suffix):
    text = "training:\n  lr: 1.0e-5\n  train_iters: 10\ndata:\n  split: '95,5,0'\n" + suffix
    for cut in (len(text), len(text) // 2, len(text) // 3):
        path = tmp_path / "c.yaml"
        path.write_text(text[:cut])
        only_config_errors(path)


@pytest.mark.parametrize("text", [
    "training:\n  lr: .nan\n", "training:\n  lr: .inf\n", "training:\n  train_iters: 1e400\n",
    "a: " + "[" * 5000 + "]" * 5000 + "\n",
    "training:\n  lr: 1\n  lr: 2\n",
    "a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n",
    "!!python/object/apply:os.system ['true']\n",
])
def test_named_hostile_inputs(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_file(path)
    assert info.value.messages[0].startswith(str(path))


def test_huge_string_value_loads_quickly(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  data_path: " + "x" * 1_000_000 + "\n")
    only_config_errors(path)


def test_invalid_utf8(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"training:\n  lr: \xff\xfe\n")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_file(path)


def test_nan_lr_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  lr: .nan\n")
    with pytest.raises(ConfigError, match="training.lr"):
        load_file(path)
