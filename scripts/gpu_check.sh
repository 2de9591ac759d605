#!/usr/bin/env bash
# The GPU check: one prepared run of everything in spike-edge that needs a CUDA GPU (docs/gpu-check.md).
#
# Runs from a copy of the repository (the source tree, never pip-installed) with the wheels the GPU
# machine lacks beside it in .whl/ (scripts/device_wheels.sh, or `make device-wheels`, puts pyzmq
# there), on the machine's own python3 (torch with CUDA, onnxruntime, pytest...), in under 8 minutes
# on an H200. Steps, each with its own time limit and its output appended to gpu_check.log:
#   1. nvidia-smi
#   2. install the carried wheels: pip install --no-index --no-deps --target /tmp/site .whl/*.whl
#      (dry: only checks that they install on CPython 3.12 manylinux x86_64)
#   3. the GPU tests: pytest -m gpu
#   4. spike-edge bench device for LRN, then STIR: batch 1, 8 and 32; the project's torch backend
#      (fp16, CUDA graphs), the eager fp32 baseline and the candidates other versions add (bf16,
#      AOTInductor 'aoti...', compiled), selected by pattern so a missing one is listed, not an
#      error; the per-stage split (H2D, unpack + prepare, network, D2H) is in each report
#   5. spike-edge bench pipeline (LRN on the torch backend): 250x400 at 40 kHz, 1000x1000 at 20 kHz
# and writes a summary (summary.md, summary.json) at the end; every report is rewritten as it grows,
# so a step cut off by its limit leaves what it had measured. At most 8 files, no subfolders:
#   gpu_check.log bench-lrn.json bench-lrn.md bench-stir.json bench-stir.md pipeline.json summary.md summary.json
#
# Usage: scripts/gpu_check.sh [--dry] [OUTDIR]
#   OUTDIR   where the files go: $OUT when set (the device tool's folder), else this argument,
#            else ./gpu-check-out
#   --dry    the same steps on the CPU at tiny sizes and seconds (well under a minute; CI runs it:
#            tests/test_gpu_check.py); also GPU_CHECK_DRY=1
# Environment: PYTHON (default python3), GPU_CHECK_BUDGET_S (default 450: no step starts past it,
#   and each step's limit is cut to what is left), SPIKE_EDGE_SHARED_DATA (sample data, optional).
# Exit status: 0 when every step ran and passed, 1 when any step failed or timed out.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
DRY=${GPU_CHECK_DRY:-0}
ARG_OUT=
for arg in "$@"; do
    case "$arg" in
        --dry) DRY=1 ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "gpu_check: unknown option '$arg' (see --help)" >&2; exit 2 ;;
        *) ARG_OUT=$arg ;;
    esac
done
OUTDIR=${OUT:-${ARG_OUT:-$PWD/gpu-check-out}}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
PYTHON=${PYTHON:-python3}
BUDGET_S=${GPU_CHECK_BUDGET_S:-450}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
LOG=$OUTDIR/gpu_check.log
STEPS=$WORK/steps.tsv
: >"$LOG"
: >"$STEPS"
START_S=$(date +%s)
SITE=/tmp/site
export PYTHONUNBUFFERED=1
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}

say() { echo "gpu_check: $*" | tee -a "$LOG" >&2; }

# step NAME LIMIT_S COMMAND...: run it under `timeout` (limit cut to the budget left), output to the log
step() {
    local name=$1 limit=$2; shift 2
    local left=$(( BUDGET_S - ($(date +%s) - START_S) ))
    if [ "$left" -lt 10 ]; then
        say "$name: skipped (budget of ${BUDGET_S}s spent)"
        printf '%s\tskipped\t0\t-\n' "$name" >>"$STEPS"
        return 0
    fi
    [ "$limit" -le "$left" ] || limit=$left
    say "$name: starting (limit ${limit}s): $*"
    local t0=$(date +%s) rc status
    { echo "===== $name: $*"; } >>"$LOG"
    timeout -k 10 "$limit" "$@" >>"$LOG" 2>&1
    rc=$?
    case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status=failed ;; esac
    printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$(( $(date +%s) - t0 ))" "$rc" >>"$STEPS"
    say "$name: $status (exit $rc, $(( $(date +%s) - t0 ))s)"
    return 0
}

if [ "$DRY" = 1 ]; then  # the same steps, on the CPU, tiny
    DEVICE=cpu; SECONDS_PER=0; BATCHES=1,2; GEOM_ARGS=(--height 16 --width 16 --stage-calls 2); BENCH_LIMIT=60
    PIPE_METHOD=(--method tfp --backend numpy); PIPE_TIME=(--seconds 1 --warmup 0.5)
    PIPE_GEOMS=("250x400-40k:--height 16 --width 16 --rate-hz 2000" "1000x1000-20k:--height 16 --width 24 --rate-hz 1000")
    PIPE_LIMIT=40; PYTEST_LIMIT=90
else
    DEVICE=cuda; SECONDS_PER=1; BATCHES=1,8,32; GEOM_ARGS=(); BENCH_LIMIT=110
    PIPE_METHOD=(--method lrn --backend torch); PIPE_TIME=(--seconds 8 --warmup 3)
    PIPE_GEOMS=("250x400-40k:--height 250 --width 400 --rate-hz 40000" "1000x1000-20k:--height 1000 --width 1000 --rate-hz 20000")
    PIPE_LIMIT=70; PYTEST_LIMIT=120
fi
CANDIDATES='eager-fp32,torch,torch-*,*bf16*,*fp16*,aoti*,*compile*'
STIR_CANDIDATES=$CANDIDATES
if [ "$DRY" = 1 ]; then
    # the dry run's 16x16 STIR AOTInductor package aborts natively on the CPU ("double free or
    # corruption"; 256x400 packages run, docs/results/cpu-xeon-amx-2core.md): LRN exercises AOTI here
    STIR_CANDIDATES='eager-fp32,torch,torch-*'
fi
say "repository $REPO, output $OUTDIR, python $($PYTHON -c 'import sys; print(sys.version.split()[0])' 2>&1), dry $DRY"

# 1. the GPU
if command -v nvidia-smi >/dev/null 2>&1; then
    step nvidia-smi 20 nvidia-smi
else
    say "nvidia-smi: not on this machine"
    printf 'nvidia-smi\tabsent\t0\t-\n' >>"$STEPS"
fi

# 2. the carried wheels (pyzmq), beside the tree, never from an index
if compgen -G "$REPO/.whl/*.whl" >/dev/null && [ "$DRY" = 1 ]; then  # check they fit the GPU machine, install nothing
    step wheels 60 "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --dry-run \
        --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --only-binary=:all: \
        --target "$WORK/site" "$REPO"/.whl/*.whl
elif compgen -G "$REPO/.whl/*.whl" >/dev/null; then
    step wheels 60 "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "$REPO"/.whl/*.whl
    export PYTHONPATH=$REPO:$SITE${PYTHONPATH#"$REPO"}
else
    say "wheels: none in $REPO/.whl (scripts/device_wheels.sh fetches them); using what $PYTHON has"
    printf 'wheels\tabsent\t0\t-\n' >>"$STEPS"
fi

# 3. the GPU tests, from the source tree
step pytest-gpu "$PYTEST_LIMIT" bash -c "cd '$REPO' && '$PYTHON' -m pytest -m gpu -q -rs -p no:cacheprovider tests"

# 4. the device bench, one network per step (each report rewritten as every candidate finishes)
for method in lrn stir; do
    cands=$CANDIDATES; [ "$method" = stir ] && cands=$STIR_CANDIDATES
    step "bench-$method" "$BENCH_LIMIT" "$PYTHON" -m edge bench device --device "$DEVICE" --methods "$method" \
        --seconds "$SECONDS_PER" --batch-sizes "$BATCHES" "${GEOM_ARGS[@]}" --no-tensorrt \
        --candidates "$cands" --out "$OUTDIR/bench-$method.json"
done

# 5. the live pipeline (a real daemon and subscriber), two camera geometries
for spec in "${PIPE_GEOMS[@]}"; do
    name=${spec%%:*}
    read -r -a geom <<<"${spec#*:}"
    step "pipeline-$name" "$PIPE_LIMIT" bash -c \
        "'$PYTHON' -m edge bench pipeline ${PIPE_METHOD[*]} --hop 40 ${PIPE_TIME[*]} ${geom[*]} --json >'$WORK/pipeline-$name.json'"
    "$PYTHON" "$REPO/scripts/gpu_check_summary.py" pipeline "$WORK" "$OUTDIR/pipeline.json" >>"$LOG" 2>&1
done

# the summary
"$PYTHON" "$REPO/scripts/gpu_check_summary.py" summary "$STEPS" "$OUTDIR" --dry "$DRY" \
    --wall-s "$(( $(date +%s) - START_S ))" >>"$LOG" 2>&1
cat "$OUTDIR/summary.md" >&2 2>/dev/null || say "no summary was written (see $LOG)"
! grep -qP '\t(failed|timeout)\t' "$STEPS"
