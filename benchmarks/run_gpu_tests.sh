#!/usr/bin/env bash
# The gpu-marked tests on a GPU machine whose image lacks Megatron-Bridge's Python dependencies: installs the
# wheels in .whl/ (see benchmarks/README.md; pytest's wheels too), then runs pytest -m gpu once per argument, so
# one crash or timeout loses only that argument's tests. An argument is a path, optionally with pytest options
# in the same word ("tests/x_gpu.py -k lora"). Logs and JUnit XML go to $OUT.
#
#   bash benchmarks/run_gpu_tests.sh SECONDS_EACH tests/engine/megatron/test_finetune_gpu.py ["PATH -k EXPR" ...]
set -uo pipefail
per_file=${1:?usage: bash benchmarks/run_gpu_tests.sh SECONDS_EACH PATH [PATH...]}
shift
out=${OUT:-/tmp/primus-gpu-tests-out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "installing the wheels from .whl/ failed" >&2; exit 1; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,power.limit --format=csv > "$out/gpu-tests.log" 2>&1
status=0
for spec in "$@"; do
    read -r -a words <<< "$spec"
    path=${words[0]}
    name=$(basename "${path%%::*}" .py)
    echo "=== $spec ($(date -u +%H:%M:%S))" >> "$out/gpu-tests.log"
    timeout "$per_file" python3 -m pytest -m gpu -p no:cacheprovider -rA -q "${words[@]}" \
        --junitxml="$out/$name.xml" > "$out/$name.log" 2>&1
    code=$?
    echo "exit $code: $spec" >> "$out/gpu-tests.log"
    tail -n 15 "$out/$name.log" >> "$out/gpu-tests.log"
    [ "$code" -eq 0 ] || status=1
done
tail -n 60 "$out/gpu-tests.log"
exit $status
