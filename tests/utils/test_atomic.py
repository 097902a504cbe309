"""Atomic writes: complete or absent, never half; permissions follow the umask like ordinary files."""

import os
import stat

import pytest

from primus_bridge.utils.atomic import atomic_dir, atomic_write_text


def test_dir_appears_only_when_complete(tmp_path):
    final = tmp_path / "ckpt"
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "a").write_text("x")
            raise RuntimeError("crash mid-save")
    assert not final.exists() and os.listdir(tmp_path) == []
    with atomic_dir(final) as tmp:
        (tmp / "a").write_text("x")
    assert (final / "a").read_text() == "x"


def test_replace_swaps_whole_folder(tmp_path):
    final = tmp_path / "out"
    for text in ("old", "new"):
        with atomic_dir(final, replace=True) as tmp:
            (tmp / "f").write_text(text)
    assert (final / "f").read_text() == "new" and sorted(os.listdir(tmp_path)) == ["out"]


def test_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("x")
        atomic_write_text(tmp_path / "t.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "d").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(tmp_path / "t.txt").st_mode) == 0o644
