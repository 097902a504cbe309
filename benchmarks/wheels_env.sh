# shellcheck shell=bash
# Sourced by run_suite.sh and run_gpu_tests.sh, from the repository root: installs the wheels in $WHEELS_DIR
# (default .whl/: Megatron-Bridge, Megatron-Core, liger-kernel and what they import, for a plain PyTorch image) into
# /tmp/site and puts it and the repository on PYTHONPATH; without wheels (a full image) only the repository.
wheels=${WHEELS_DIR:-.whl}
if compgen -G "$wheels/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$wheels"/*.whl || { echo "installing the wheels from $wheels/ failed" >&2; exit 1; }
    export PYTHONPATH=/tmp/site:$PWD
else
    echo "no wheels in $wheels/: using the packages python3 has (a full image)" >&2
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
