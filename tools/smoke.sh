#!/usr/bin/env bash
# Smoke path of an installed mmali_tf on another Python: train a few steps, evaluate, export,
# translate a PNG. Usage: tools/smoke.sh PYTHON  (a python whose environment has the package).
# Runs in a temporary directory outside the checkout, so the installed package is what runs.
set -euo pipefail
py="$1"
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
bin="$(dirname "$py")"
"$py" -c 'import sys, mmali_tf; assert "site-packages" in mmali_tf.__file__, mmali_tf.__file__; print("mmali_tf from", mmali_tf.__file__, "on Python", sys.version.split()[0])'
"$bin/mmali-train" --flagfile="$repo/configs/digits_mvae.cfg" --run_dir=run --max_steps=3 \
    --batch_size=16 --nojit_compile --checkpoint_every=3 --sample_every=0 --log_every=1 \
    --digits_print_per_class=20 --cache_dir=cache
"$bin/mmali-evaluate" --run_dir=run --num_samples=40 --probe_epochs=1 --classifier_epochs=1 \
    --iwae_samples=2 --ll_items=8
"$bin/mmali-export" --run_dir=run --out=bundle --graphs=translate_hand_to_print
"$py" -c 'import numpy as np; from PIL import Image; Image.fromarray((np.random.default_rng(0).random((28, 28)) * 255).astype(np.uint8)).save("digit.png")'
"$bin/mmali-translate" --bundle=bundle --from=hand --to=print --input=digit.png --output=out.png --seed=0
"$py" -c 'from PIL import Image; im = Image.open("out.png"); assert min(im.size) >= 32, im.size; print("smoke ok: translated PNG", im.size)'
# the bundle shipped in the package, without --bundle
"$bin/mmali-translate" --from=hand --to=print --input=digit.png --output=shipped.png --seed=0
"$py" -c 'from PIL import Image; im = Image.open("shipped.png"); assert min(im.size) >= 32, im.size; print("smoke ok: shipped bundle", im.size)'
