"""examples/run_megatron_bridge.sh: each example's command line is one the CLI accepts; no argument -> menu."""

import os
import pty
import shlex
import subprocess
import sys

import pytest

from primus_bridge.cli.main import main as cli_main

SCRIPT = "examples/run_megatron_bridge.sh"


def dry_run(repo, example: str) -> list[str]:
    env = {**os.environ, "DRY_RUN": "1", "PYTHON": sys.executable}
    out = subprocess.run(["bash", SCRIPT, example], cwd=repo, env=env, capture_output=True, text=True, check=True)
    (line,) = [out_line for out_line in out.stdout.splitlines() if out_line.startswith("+ ")]
    return shlex.split(line[2:])


@pytest.mark.parametrize("example", ["sft", "hf", "lora", "chat", "export"])
def test_example_command_parses(repo, monkeypatch, capsys, example):
    argv = dry_run(repo, example)
    module = "primus_bridge.convert" if example == "export" else "primus_bridge.train"
    assert module in argv
    flags = argv[argv.index(module) + 1:]
    monkeypatch.chdir(repo)
    assert cli_main(["print-config", *flags]) == 0, capsys.readouterr().err


def test_unknown_example_and_no_tty_exit_2(repo):
    for args in (["nope"], []):
        out = subprocess.run(["bash", SCRIPT, *args], cwd=repo, stdin=subprocess.DEVNULL,
                             capture_output=True, text=True)
        assert out.returncode == 2 and "usage:" in out.stderr


def test_menu_on_a_terminal(repo):
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(repo)
        os.execvp("bash", ["bash", SCRIPT])
    shown = b""
    while b"choose an example" not in shown:
        shown += os.read(fd, 1024)
    os.write(fd, b"6\n")  # quit
    _, status = os.waitpid(pid, 0)
    assert b"1) sft" in shown and b"5) export" in shown
    assert os.waitstatus_to_exitcode(status) == 0
