#!/usr/bin/env bash
# GPU check (issue 13) on one CUDA machine, within 8 minutes: installs what the CUDA suite needs
# (only where the python in use lacks it), runs `pytest -m cuda tests/test_cuda.py`, then times the
# papers' speed settings and RegSeg's training throughput (benchmarks/gpu_check.py) and writes the
# table, with the GPU's name, into docs/benchmarks.md between its markers.
#
#   bash benchmarks/gpu_check.sh
#
# Python: $PYTHON if set; else python3 if its torch sees a GPU (the lent H200 machines: their
# python3 holds torch with CUDA, onnx, onnxruntime and pytest, and nothing can be installed
# there); else a virtual environment runs/gpu_check/venv with PyPI's torch (a CUDA build on Linux
# x86-64; TORCH_INDEX_URL picks another index) and the project's test/export extras.
# Logs and a copy of docs/benchmarks.md go to $OUT if set, else to runs/gpu_check/.
# GPU_CHECK_BUDGET (default 470 s) is the hard limit for the whole script, installs included.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
budget=${GPU_CHECK_BUDGET:-470}
left() { echo $(( budget - (SECONDS - start) )); }
logs=${OUT:-runs/gpu_check}
mkdir -p "$logs"

cuda_torch() { "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }

if [ -n "${PYTHON:-}" ]; then
  py=$PYTHON
elif cuda_torch python3; then
  py=python3
else
  venv=runs/gpu_check/venv
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" || exit 1
  "$venv/bin/pip" install -q torch ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} || exit 1
  "$venv/bin/pip" install -q -e ".[test,export]" || exit 1
  py=$venv/bin/python
fi
if ! cuda_torch "$py"; then
  echo "gpu_check: $py has no CUDA-enabled torch (torch.cuda.is_available() is False); nothing measured" >&2
  exit 2
fi
if ! "$py" -c 'import pytest, onnx, onnxruntime, safetensors, yaml, tqdm, PIL, numpy' 2>/dev/null; then
  "$py" -m pip install -q -e ".[test,export]" \
    || echo "gpu_check: could not install the test/export extras; the tests that need them fail" >&2
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
"$py" -c 'import sys, torch; print(f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}, GPU {torch.cuda.get_device_name()}")'
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv 2>/dev/null

if (( $(left) < 120 )); then
  echo "gpu_check: only $(left) s of the ${budget} s budget left after the installs; nothing run" >&2
  exit 3
fi
# 1. the CUDA suite: at most 170 s, and never eating into the 280 s kept for the measurements
suite_s=$(( $(left) - 280 ))
(( suite_s > 170 )) && suite_s=170
suite_rc=0
summary="not run: no time left"
if (( suite_s >= 30 )); then
  timeout -k 10 "$suite_s" "$py" -m pytest -q -m cuda -p no:cacheprovider tests/test_cuda.py 2>&1 \
    | tee "$logs/gpu_suite.log"
  suite_rc=${PIPESTATUS[0]}
  summary=$(grep -E '(passed|failed|skipped|error)' "$logs/gpu_suite.log" | tail -1 | tr -d '=' | sed 's/^ *//;s/ *$//')
  (( suite_rc == 124 || suite_rc == 137 )) && summary="cut at ${suite_s} s (time budget): ${summary:-no summary}"
  summary="${summary:-no summary} (exit $suite_rc)"
fi

# 2. the papers' settings and training throughput, with what is left (hard limit; the table is
#    rewritten after every measurement, so a cut run keeps its partial results)
bench_s=$(( $(left) - 10 ))
timeout -k 10 "$bench_s" "$py" benchmarks/gpu_check.py --budget $(( bench_s - 20 )) --copy-to "$logs" \
  --suite "$summary" --command "bash benchmarks/gpu_check.sh" 2>&1 | tee "$logs/gpu_check.log"
bench_rc=${PIPESTATUS[0]}
echo "gpu_check: suite exit $suite_rc, measurements exit $bench_rc, $(( SECONDS - start )) s; table in docs/benchmarks.md"
exit $(( suite_rc != 0 ? suite_rc : bench_rc ))
