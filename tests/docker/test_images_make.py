"""`make -n image-rocm|image-cuda|push` print the right commands; no container engine is needed."""

import os
import re
import shutil
import subprocess

import pytest


def make(repo, *args, env_overrides=None, cwd=None):
    inherited = {k: v for k, v in os.environ.items()
                 if k not in ("MAKEFLAGS", "CONTAINER_ENGINE", "REGISTRY", "PLATFORMS")}
    env = {**inherited, **(env_overrides or {})}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=cwd or repo, env=env,
                          capture_output=True, text=True, timeout=60)


def commands(result) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.strip()]


def short_sha(repo) -> str:
    return subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True,
                          text=True, check=True).stdout.strip()


@pytest.mark.parametrize("platform, prefix, toolkit, torch", [
    ("rocm", "ROCM", "7.15", "2.12.0"), ("cuda", "CUDA", "13.3", "2.13.0a0")])
def test_one_build_command_with_the_pinned_base_and_version_tag(repo, pins, platform, prefix, toolkit, torch):
    [command] = commands(make(repo, "-n", f"image-{platform}"))
    assert command.startswith(f"docker build --file docker/Dockerfile.{platform} --target app ")
    assert command.endswith(" .")
    tag = re.search(r"--tag (\S+)", command).group(1)
    assert re.fullmatch(rf"primus-bridge:{platform}{toolkit}-torch{torch}-mcore0\.19\.2-mbridge0\.6\.2-"
                        rf"g{short_sha(repo)}(-dirty)?", tag), tag
    args = dict(re.findall(r"--build-arg (\w+)=(\S+)", command))
    expected = {k: v for k, v in pins.items() if k.startswith(prefix) or not k.startswith(("ROCM_", "CUDA_"))}
    assert {k: v for k, v in args.items() if k != "GIT_REVISION"} == expected
    assert args[f"{prefix}_BASE_IMAGE"].count("@sha256:") == 1
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", args["GIT_REVISION"])


def test_podman_is_used_when_asked(repo):
    [command] = commands(make(repo, "-n", "image-cuda", "CONTAINER_ENGINE=podman"))
    assert command.startswith("podman build ")


def test_unknown_container_engine_is_refused(repo):
    result = make(repo, "-n", "image-rocm", "CONTAINER_ENGINE=nerdctl")
    assert result.returncode != 0 and "use docker or podman" in result.stderr


def test_push_needs_a_registry(repo):
    result = make(repo, "-n", "push")
    assert result.returncode != 0 and "set REGISTRY" in result.stderr


def test_push_tags_and_pushes_each_platform(repo):
    lines = commands(make(repo, "-n", "push", "REGISTRY=registry.example.com/team"))
    assert [line.split()[:2] for line in lines] == [["docker", "tag"], ["docker", "push"]] * 2
    assert lines[1].split()[2].startswith("registry.example.com/team/primus-bridge:rocm7.15-")
    assert lines[3].split()[2].startswith("registry.example.com/team/primus-bridge:cuda13.3-")
    local, remote = lines[0].split()[2:]
    assert remote == f"registry.example.com/team/{local}"
    only_rocm = commands(make(repo, "-n", "push", "REGISTRY=r.example.com", "PLATFORMS=rocm"))
    assert len(only_rocm) == 2


def test_push_refuses_an_unknown_platform(repo):
    result = make(repo, "-n", "push", "REGISTRY=r.example.com", "PLATFORMS=tpu")
    assert result.returncode != 0 and "unknown platform 'tpu'" in result.stderr


def test_print_versions_lists_every_pin_and_both_tags(repo, pins):
    lines = commands(make(repo, "print-versions"))
    assert lines[:len(pins)] == [f"{k}={v}" for k, v in pins.items()]
    assert [line.split(":")[0] for line in lines[len(pins):]] == ["image-rocm", "image-cuda"]


def test_tags_need_a_git_checkout(repo, tmp_path):
    shutil.copytree(repo / "docker", tmp_path / "docker")
    (tmp_path / "Makefile").write_text("-include docker/images.mk\n")
    result = make(repo, "-n", "image-rocm", cwd=tmp_path, env_overrides={"GIT_CEILING_DIRECTORIES": str(tmp_path)})
    assert result.returncode != 0 and "run from a git checkout" in result.stderr


def test_other_targets_do_not_run_git(repo, tmp_path):
    """images.mk is included by every make call: only image targets may need git."""
    shutil.copytree(repo / "docker", tmp_path / "docker")
    (tmp_path / "Makefile").write_text("hello:\n\t@echo hello\n-include docker/images.mk\n")
    result = make(repo, "hello", cwd=tmp_path, env_overrides={"GIT_CEILING_DIRECTORIES": str(tmp_path)})
    assert result.returncode == 0 and result.stdout == "hello\n" and result.stderr == ""
