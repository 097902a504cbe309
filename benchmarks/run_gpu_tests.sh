#!/usr/bin/env bash
# The gpu-marked tests on a GPU machine whose image lacks Megatron-Bridge's Python dependencies: installs the wheels
# in .whl/ (see benchmarks/README.md; pytest's wheels too), then runs pytest -m gpu once per argument, so one crash or
# timeout loses only that argument's tests (at its time limit pytest gets SIGINT and still reports which tests passed
# and how the failed ones failed; SIGKILL 30 s later). An argument is a path, optionally with pytest options in the
# same word ("tests/x_gpu.py -k lora"). $OUT gets two files, however many tests ran (a device call returns only a few
# files): gpu-tests.log (each argument's exit code and summary) and gpu-tests.tgz (each argument's full pytest log and
# JUnit XML, and under reports/ the JSON the tests write to $PRIMUS_REPORT_DIR, which defaults to it here), rewritten
# after each argument. Typical times on one H100, first compilation included: test_fp8_frozen_base_gpu.py 60 s,
# test_packed_rope_gpu.py 125 s, test_chunked_head_loss_gpu.py 26 s, test_convert_cli.py 72 s, test_chat_gpu.py 90 s,
# test_megatron_guards.py 350 s, test_finetune_gpu.py well over 300 s (SFT 160 s, the resume 100 s, then LoRA and the
# exports), test_source_loss_gpu.py over 130 s.
#
#   bash benchmarks/run_gpu_tests.sh SECONDS_EACH tests/engine/megatron/test_finetune_gpu.py ["PATH -k EXPR" ...]
set -uo pipefail
per_file=${1:?usage: bash benchmarks/run_gpu_tests.sh SECONDS_EACH PATH [PATH...]}
shift
out=${OUT:-/tmp/primus-gpu-tests-out}
logs=$(mktemp -d /tmp/primus-gpu-tests-logs.XXXXXX)
mkdir -p "$out"
source benchmarks/wheels_env.sh
export PRIMUS_REPORT_DIR=${PRIMUS_REPORT_DIR:-$logs/reports}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,power.limit --format=csv > "$out/gpu-tests.log" 2>&1
status=0
for spec in "$@"; do
    read -r -a words <<< "$spec"
    path=${words[0]}
    name=$(basename "${path%%::*}" .py)
    echo "=== $spec ($(date -u +%H:%M:%S))" >> "$out/gpu-tests.log"
    timeout -s INT -k 30 "$per_file" python3 -m pytest -m gpu -p no:cacheprovider -rA -v "${words[@]}" \
        --junitxml="$logs/$name.xml" > "$logs/$name.log" 2>&1
    code=$?
    echo "exit $code: $spec" >> "$out/gpu-tests.log"
    grep -v DEBUG "$logs/$name.log" | tail -n 15 >> "$out/gpu-tests.log"
    [ "$code" -eq 0 ] || status=1
    # after each argument, so that a call cut short still returns the arguments that finished
    tar czf "$out/gpu-tests.tgz.part" -C "$logs" . && mv "$out/gpu-tests.tgz.part" "$out/gpu-tests.tgz"
done
tail -n 60 "$out/gpu-tests.log"
exit $status
