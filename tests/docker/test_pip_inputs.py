"""docker/pip_inputs.py: the project's pins, except that the base keeps its GPU-built packages."""

import importlib.util

import pytest
from dockerfile_parsing import DOCKER


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, DOCKER / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pip_inputs = load("pip_inputs")

BASE_FREEZE = """torch==2.13.0a0+8145d630e8.nv26.6.54250401
numpy==2.1.0
transformer_engine==2.16.0+4220403e
flash_attn==2.7.4.post1+git5231d95fe1.54157505
PyYAML==6.0.1
pandas==2.3.3
"""


def test_base_keeps_its_gpu_stack_and_the_project_pins_the_rest(tmp_path, repo):
    (tmp_path / "freeze.txt").write_text(BASE_FREEZE)
    pip_inputs.main(["--base-freeze", str(tmp_path / "freeze.txt"), "--constraints", str(repo / "constraints.txt"),
                     "--pyproject", str(repo / "pyproject.toml"), "--extras", "megatron,report",
                     "--out-dir", str(tmp_path / "out")])
    constraints = dict(line.split("==") for line in (tmp_path / "out" / "constraints.txt").read_text().splitlines())
    assert constraints["torch"] == "2.13.0a0+8145d630e8.nv26.6.54250401"  # not constraints.txt's 2.14.1
    assert constraints["numpy"] == "2.1.0"
    assert constraints["transformer-engine"] == "2.16.0+4220403e" and constraints["flash-attn"].startswith("2.7.4")
    assert constraints["pyyaml"] == "6.0.4" and constraints["transformers"] == "5.12.1"  # the project's pins
    assert "pandas" not in constraints  # not base-owned, not pinned by the project: resolves freely
    requirements = (tmp_path / "out" / "requirements.txt").read_text().splitlines()
    assert "torch" in requirements and "megatron-core==0.19.2" in requirements and "matplotlib" in requirements


def test_unknown_extra_is_an_error(tmp_path, repo):
    with pytest.raises(SystemExit, match="no extra gpu"):
        pip_inputs.requirements(repo / "pyproject.toml", ["gpu"])


def test_malformed_pin_names_file_and_line(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("# pins\ntorch==2.1\ntransformers>=5\n")
    with pytest.raises(SystemExit, match=r"c.txt:3: expected name==version"):
        pip_inputs.read_pins(path)


def test_canonical_names():
    assert pip_inputs.canonical("Flash_Attn") == "flash-attn" and pip_inputs.canonical("PyYAML") == "pyyaml"
