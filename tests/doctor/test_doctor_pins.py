"""The pins file format and the version comparisons the doctor and the image build share."""

import pytest

from primus_bridge.doctor.pins import (DEFAULT_VERSIONS_FILE, PinsError, pin_key, read_versions_file, same_release,
                                       same_version, torch_platform)


def test_the_checkouts_versions_file_reads(repo):
    assert DEFAULT_VERSIONS_FILE == repo / "docker" / "versions.env"
    pins = read_versions_file(DEFAULT_VERSIONS_FILE)
    assert pins["MEGATRON_CORE_VERSION"] == "0.19.2" and "@sha256:" in pins["ROCM_BASE_IMAGE"]


@pytest.mark.parametrize("text, message", [
    ("A=1\nB = 2\n", ":2: expected KEY=value"),
    ("A=1\nA=2\n", ":2: A is set twice"),
    ('A="1"\nlower=2\n', ":2: expected KEY=value"),
])
def test_malformed_lines_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "v.env"
    path.write_text(text)
    with pytest.raises(PinsError, match=message):
        read_versions_file(path)


def test_comments_and_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "v.env"
    path.write_text("# a comment\n\nROCM_VERSION=7.15\n  # indented comment\n")
    assert read_versions_file(path) == {"ROCM_VERSION": "7.15"}


@pytest.mark.parametrize("pin, found, same", [
    ("2.16.0+4220403e", "2.16.0+4220403e", True),
    ("2.7.4.post1", "2.7.4.post1+git5231d95fe1.54157505", True),  # vendor build tag after the pin
    ("2.13.0a0+8145d630e8.nv26.06", "2.13.0a0+8145d630e8.nv26.6.54250401", True),  # NGC dist metadata
    ("2.13.0a0+8145d630e8.nv26.06", "2.13.0a0+8145d630e8.nv26.05", False),
    ("2.7.4.post1", "2.7.4", False),
    ("2.8.3", "2.8.3.1", False),
    ("0.19.2", "0.19.3", False),
    ("1.14.0a0+rocm7.15.0a20260721", "1.14.0a0+rocm7.14.0a20260608", False),
])
def test_same_version(pin, found, same):
    assert same_version(pin, found) is same


@pytest.mark.parametrize("pin, found, same", [
    ("7.15", "7.15.0", True), ("7.15", "7.15.60850", True), ("13.3", "13.3", True),
    ("7.15", "7.14.60850", False), ("13.3", "13.0", False), ("13.3", "1.3", False),
])
def test_same_release(pin, found, same):
    assert same_release(pin, found) is same


def test_pin_keys():
    assert pin_key("rocm", "TE_VERSION") == "ROCM_TE_VERSION"
    assert pin_key("cuda", "MEGATRON_CORE_VERSION") == "MEGATRON_CORE_VERSION"


def test_torch_platform_names_the_build():
    import torch

    expected = "rocm" if torch.version.hip else "cuda" if torch.version.cuda else "cpu"
    assert torch_platform() == expected
