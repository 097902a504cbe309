"""The exit file the launcher reads: a requeue code never replaces another rank's permanent failure."""

from primus_bridge.run.exit_codes import (EXIT_FILE_ENV, NONFINITE_EXIT_CODE, PREEMPTED_EXIT_CODE, record_exit,
                                          recorded_exit)


def test_a_permanent_failure_wins_over_a_later_requeue_and_not_the_other_way(tmp_path, monkeypatch):
    path = tmp_path / "exit.json"
    monkeypatch.setenv(EXIT_FILE_ENV, str(path))
    record_exit(PREEMPTED_EXIT_CODE, "preempted")
    assert recorded_exit(path) == (PREEMPTED_EXIT_CODE, "preempted")
    record_exit(NONFINITE_EXIT_CODE, "training diverged at step 7")
    record_exit(PREEMPTED_EXIT_CODE, "preempted")
    assert recorded_exit(path) == (NONFINITE_EXIT_CODE, "training diverged at step 7")


def test_without_the_variable_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv(EXIT_FILE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    record_exit(PREEMPTED_EXIT_CODE, "preempted")
    assert list(tmp_path.iterdir()) == []
