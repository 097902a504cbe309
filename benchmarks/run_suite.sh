#!/usr/bin/env bash
# A one-GPU benchmark suite (h100, h200 or fp8-loss) on a GPU machine, sized to one device call (each command there
# may run at most 10 minutes). Run it from the repository root there, with .whl/ holding the wheels of
# Megatron-Bridge, Megatron-Core, liger-kernel and the packages they import (for a plain PyTorch image
# without them):
#
#   bash benchmarks/run_suite.sh SUITE REPORT_DIR [BUDGET_SECONDS] [more primus-bridge bench flags]
#
# It resumes REPORT_DIR (whatever results.json it already holds), runs cases until BUDGET_SECONDS
# (default 430) are spent, and leaves in $OUT: bench.log (the harness's own log) and bench.tgz
# (REPORT_DIR plus every process's log; the workdir is $BENCH_WORKDIR, default /tmp/primus-bench). Without
# wheels in .whl/ ($WHEELS_DIR) it runs on the packages python3 already has. Call it again with the returned
# REPORT_DIR in place to continue; `primus-bridge bench --suite SUITE --out REPORT_DIR --render` rewrites the
# report anywhere.
# While it runs, bench.tgz is rewritten every SNAPSHOT_S seconds (default 30; renamed into place, never half
# written) with what has finished so far: a device call cut short (its time limit, the machine taken back) still
# returns every finished run.
# Examples:
#   bash benchmarks/run_suite.sh h100 benchmarks/reports/DATE-h100-suite 470 --cases llama3-8b-lora-s4096 \
#       --systems hf-liger,megatron-fp8
#   bash benchmarks/run_suite.sh fp8-loss benchmarks/reports/DATE-h100-fp8-loss 540   # ~9 min: run it twice
#   bash benchmarks/run_suite.sh card benchmarks/reports/DATE-CARD-suite 520   # h100 or h200, by the card that came
set -uo pipefail
suite=${1:?usage: bash benchmarks/run_suite.sh SUITE REPORT_DIR [BUDGET_SECONDS] [flags]}
report=${2:?usage: bash benchmarks/run_suite.sh SUITE REPORT_DIR [BUDGET_SECONDS] [flags]}
budget=${3:-430}
shift $(( $# >= 3 ? 3 : 2 ))
if [ "$suite" = card ]; then  # the one-GPU suite of the card this machine has; CARD in REPORT_DIR names it
    case "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)" in
        *H200*) suite=h200 ;;
        *H100*) suite=h100 ;;
        *) echo "SUITE card: the GPU is neither an H100 nor an H200; name the suite" >&2; exit 2 ;;
    esac
    report=${report//CARD/$suite}
fi
out=${OUT:-/tmp/primus-bench-out}
work=${BENCH_WORKDIR:-/tmp/primus-bench}
mkdir -p "$out" "$work"

source benchmarks/wheels_env.sh

snapshot() {  # the report and the logs as they are now, into $out/bench.tgz (through $out/bench.tgz.$1)
    mkdir -p "$report" "$work/logs"
    tar czf "$out/bench.tgz.$1" "$report" -C "$work" logs && mv "$out/bench.tgz.$1" "$out/bench.tgz"
}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,power.limit --format=csv > "$out/bench.log" 2>&1
( while sleep "${SNAPSHOT_S:-30}" && kill -0 $$ 2>/dev/null; do snapshot part 2>/dev/null; done ) &
snapshots=$!
python3 -m primus_bridge.cli.main bench --suite "$suite" --out "$report" --workdir "$work" --resume \
    --time-budget "$budget" "$@" >> "$out/bench.log" 2>&1
code=$?
kill "$snapshots" 2>/dev/null
wait "$snapshots" 2>/dev/null
snapshot last
rm -f "$out/bench.tgz.part"
tail -n 25 "$out/bench.log"
exit $code
