import sys
import time

from primus_bridge.bench.processes import log_tail, python_command, run_logged


def test_output_goes_to_the_log(tmp_path):
    log = tmp_path / "run.log"
    finished = run_logged([sys.executable, "-c", "print('hello from the child')"], log, 60, tmp_path)
    assert finished.returncode == 0
    assert "hello from the child" in log_tail(log)


def test_a_failed_workers_cause_leads_the_tail_of_a_torchrun_log(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("[rank0]:   File \"x.py\", line 81, in check\n"
                   "[rank0]: NotImplementedError: \"isfinite\" not implemented for 'Float8_e4m3fn'\n"
                   + "launcher noise\n" * 30 + "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n")
    tail = log_tail(log)
    assert tail.splitlines()[0] == "cause: [rank0]: NotImplementedError: \"isfinite\" not implemented for " \
                                   "'Float8_e4m3fn'"
    assert tail.endswith("ChildFailedError: ")


def test_timeout_stops_the_whole_process_group(tmp_path):
    script = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); " \
             "time.sleep(60)"
    start = time.monotonic()
    finished = run_logged([sys.executable, "-c", script], tmp_path / "run.log", 1, tmp_path)
    assert finished.returncode is None
    assert time.monotonic() - start < 30


def test_gpu_runs_start_under_torchrun():
    assert python_command("m", ["--x"], gpus=0)[1:] == ["-m", "m", "--x"]
    command = python_command("m", ["--x"], gpus=2)
    assert command[1:3] == ["-m", "torch.distributed.run"] and "--nproc-per-node=2" in command
