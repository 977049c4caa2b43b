#!/usr/bin/env bash
# The GPU rows of docs/benchmarks.md in one go: `base` segmentation at 512 (batch 2 and 8), detection at 896,
# bf16 autocast, channels-last, torch.compile. About 10 minutes on one H100; each run has its own time limit, so a
# slow one cannot starve the rest, and the runs come in order of importance.
#
#   bash scripts/gpu_benchmarks.sh [OUT_DIR]      # default OUT_DIR: gpu-benchmarks
#
# Where ivgf_hf is not installed (a bare GPU image with torch, transformers and timm but no network), it is
# copied from this checkout into a temporary folder. Writes OUT_DIR/*.json|md|png and a log, and OUT_DIR.tar.gz with
# all of them; prints the markdown tables at the end. DEVICE=cpu PRESET=tiny TIME_SCALE=5 runs the same script on
# the CPU with the tiny preset and five times the time limits: a check of the script itself.
set -uo pipefail

out="${1:-gpu-benchmarks}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
device="${DEVICE:-cuda}"
preset="${PRESET:-base}"
time_scale="${TIME_SCALE:-1}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
log="$out/log.txt"
# Python runs from an empty folder: from the checkout's root, its ivgf_hf/ (without modeling/, which the install
# maps into it) would shadow the installed package.
cd "$(mktemp -d)" || exit 1

if ! "$python" -c "import ivgf_hf.benchmark" 2>/dev/null; then
    # The package as setup.cfg's package_dir lays it out, without pip or build tools (an offline GPU image).
    site="$(mktemp -d)"
    cp -r "$repo/ivgf_hf" "$site/ivgf_hf" && cp -r "$repo/modeling" "$site/ivgf_hf/modeling" \
        && cp -r "$repo/model_cards" "$site/ivgf_hf/model_cards" || exit 1
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    "$python" -c "import ivgf_hf.benchmark" || { echo "ivgf_hf does not import from $site"; exit 1; }
fi
if [ "$device" = cuda ]; then
    "$python" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" \
        || exit 1
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv >>"$log" 2>&1
fi

# run NAME SECONDS ARGS...: one `ivgf benchmark` run, stopped after SECONDS.
run() {
    local name="$1" seconds=$(($2 * time_scale))
    shift 2
    echo "== $name (limit ${seconds} s)" | tee -a "$log"
    timeout --kill-after=10 "$seconds" "$python" -m ivgf_hf.cli benchmark --device "$device" --preset "$preset" --dtype bf16 \
        --skip-data --out "$out/$name.json" "$@" >>"$log" 2>&1
    local status=$?
    [ "$status" -eq 0 ] || echo "   $name ended with status $status (124: over its time limit); see $log" | tee -a "$log"
}

run gpu-seg512-b2 210 --size 512 --batch 2 --channels-last --variants ivgf sum_fusion --agf-max-naive-gib 24 \
    --plot "$out/gpu-seg512-b2"
run gpu-seg512-b8 80 --size 512 --batch 8 --channels-last --variants ivgf --agf-sizes
run gpu-det896-b2 100 --task detection --size 896 --batch 2 --variants ivgf --agf-sizes
run gpu-seg512-b2-compile 180 --size 512 --batch 2 --channels-last --compile --variants ivgf --phases inference \
    --agf-sizes

tar czf "$out.tar.gz" -C "$(dirname "$out")" "$(basename "$out")"
cat "$out"/*.md 2>/dev/null
