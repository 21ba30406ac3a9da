#!/usr/bin/env bash
# The GPU check, in one call of the device tool on a lent machine (Python 3.12 with torch, no network):
#     run(command="bash gpu_check.sh", carry=[".whl"], timeout_s=540)
# It installs the carried wheels (.whl/, git-ignored: what the machine's image lacks, for Python 3.12: diffusers,
# gymnasium, Farama-Notifications; pybullet has no cp312 wheel and must be built there, or the device tests that
# step a simulator fail), measures with gpu_check.py on cuda and on the machine's CPU, then runs the device
# tests on cuda. Here, without a GPU:
#     DEVICE=cpu PY=.venv/bin/python bash gpu_check.sh --quick      # the dry run
set -uo pipefail
cd "$(dirname "$0")"
OUT=${OUT:-runs/gpu-check}
PY=${PY:-python3}
mkdir -p "$OUT"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} || exit 1
fi
nvidia-smi -L 2>/dev/null | tee "$OUT/gpu.txt"
PYTHONUNBUFFERED=1 $PY gpu_check.py --device "${DEVICE:-cuda}" --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_check.log"
status=${PIPESTATUS[0]}
DBP_TEST_DEVICE=${DEVICE:-cuda} PYTHONUNBUFFERED=1 $PY -m pytest -q -m device -p no:cacheprovider test_*.py 2>&1 \
    | tee "$OUT/device_tests.log"
tests=${PIPESTATUS[0]}
[ "$tests" = 5 ] && tests=0          # pytest's 5: no test is marked device
exit $(( status != 0 || tests != 0 ))
