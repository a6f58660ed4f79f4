#!/usr/bin/env bash
# All side-by-side speed records of this host against the authors' code, then the table.
#
#   bash bench/side_by_side.sh            # REF_VENV and SNAPSHOTS below, or set them
#
# Runs `bench/reference_step.py` (mmALI, MMVAE, mmJSD and mmJSD with text; the authors'
# iteration and ours with XLA on and off, alternating) four times: one thread and default threads, each natively and
# with the kernels capped at AVX2 (`--emulate_isa avx2`, only on a CPU with AVX-512: an
# emulation, recorded as such, not a real AVX2 host). Records go to
# bench/results/side_by_side/<host type>-<native|avx2emu>-<1thread|default>.json (a later run
# on another host type adds its own files), and the table in docs/performance.md is rendered
# from every record in that folder (one row per host type, model and threads).
# About 10-12 minutes on an idle 2-core machine (each invocation prints its time); run it on an
# idle machine: the records carry the load average and mark a loaded host.
set -euo pipefail
cd "$(dirname "$0")/.."
REF_VENV=${REF_VENV:-/work/refvenv}
SNAPSHOTS=${SNAPSHOTS:-/work/ref}
ROUNDS=${ROUNDS:-2}
OUT=bench/results/side_by_side
mkdir -p "$OUT"
export TF_CPP_MIN_LOG_LEVEL=3 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

host=$(python -c 'import sys; sys.path.insert(0, "bench"); import host
print(host.cpu_flags()["isa_class"].lower().replace(" + ", "_").replace("-", ""))')
isas=(native)
if grep -qw avx512f /proc/cpuinfo; then isas+=(avx2emu); fi
for isa in "${isas[@]}"; do
  for threads in 1 0; do
    name="$host-$isa-$([ "$threads" = 1 ] && echo 1thread || echo default)"
    start=$SECONDS
    python bench/reference_step.py --ref_python="$REF_VENV/bin/python" \
      --mmali_src="$SNAPSHOTS/6b5d+mmali" --mmvae_src="$SNAPSHOTS/iffsid+mmvae/src" \
      --mmjsd_src="$SNAPSHOTS/thomassutter+mmjsd" --models mmali,mmvae,mmjsd,mmjsd_text \
      --threads "$threads" --rounds "$ROUNDS" --steps 3 --ref_steps 1 \
      $([ "$isa" = avx2emu ] && echo --emulate_isa avx2) --json "$OUT/$name.json" \
      | grep -E '^round '
    echo "$name: $((SECONDS - start)) s"
  done
done
python bench/reference_step.py --render "$(ls "$OUT"/*.json | paste -sd, -)" \
  --readme docs/performance.md
