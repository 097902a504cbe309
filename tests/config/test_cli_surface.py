"""The command line itself: negative numbers as flag values, --version, the usage line's command name."""

import re
import subprocess
import sys

import pytest

from primus_bridge.cli.main import VERBS
from primus_bridge.cli.main import main as cli_main
from primus_bridge.cli.parser import version
from primus_bridge.config import ConfigError, add_config_arguments, load_config
from primus_bridge.convert import CONVERT_FLAGS
from primus_bridge.convert import main as convert_main
from primus_bridge.train import build_parser
from primus_bridge.train import main as train_main


def test_a_negative_number_is_a_flag_value():
    parser = build_parser()
    args = parser.parse_args(["--lr", "-1e-4", "--set", "training.seed=-3", "--clip_grad", "-.5"])
    assert getattr(args, "flag:training.lr") == "-1e-4" and getattr(args, "flag:training.clip_grad") == "-.5"
    assert args.set_values == ["training.seed=-3"]
    with pytest.raises(ConfigError, match="cli --lr: training.lr: got '-1e-4': Input should be greater than 0"):
        load_config(args)


def test_a_negative_number_reaches_validation_through_train(capsys):
    assert train_main(["--engine", "hf", "--lr", "-1e-4"]) == 2
    assert "training.lr: got '-1e-4': Input should be greater than 0" in capsys.readouterr().err


def exit_code_of(main, argv: list[str]) -> int:
    """The verb's exit code, whether it returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as done:
        return done.code


@pytest.mark.parametrize("main", [cli_main, train_main, convert_main])
def test_version(main, capsys):
    assert exit_code_of(main, ["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"primus-bridge {version()}"


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_prints_the_version(verb, capsys):
    assert exit_code_of(cli_main, [verb, "--version"]) == 0
    assert capsys.readouterr().out.strip() == f"primus-bridge {version()}"


@pytest.mark.parametrize(("module", "usage"), [("primus_bridge.train", "usage: primus-bridge train"),
                                               ("primus_bridge.convert", "usage: primus-bridge convert")])
def test_help_names_the_command_users_type(module, usage):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith(usage)
    assert "--version" in out.stdout
    shown = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and shown.stdout.strip() == f"primus-bridge {version()}"


def test_convert_help_lists_only_the_flags_convert_reads(capsys):
    assert exit_code_of(convert_main, ["--help"]) == 0
    shown = set(re.findall(r"(--[a-z_]+)", capsys.readouterr().out))
    assert shown == CONVERT_FLAGS | {"--help", "--version", "--config", "--set", "--debug"}
    assert exit_code_of(convert_main, ["--lr", "1e-4"]) == 2
    assert "unrecognized arguments: --lr" in capsys.readouterr().err


def test_no_output_ok_is_a_flag_of_the_config():
    import argparse

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    assert load_config(parser.parse_args(["--no_output_ok"])).checkpointing.no_output_ok
