"""Round trip of an imported authors' checkpoint: our decoders vs the authors' on the same z.

    python tools/golden/check_import_roundtrip.py --run_dir=RUN --reference=DECODERS.npz \
        [--bundle=OUT]

RUN is a run directory written by tools/import_reference.py; DECODERS.npz the authors' decoder
outputs (`model/<m>`, `model_ema/<m>` on `model/z`) written by make_fixtures.py. Prints the max
absolute difference of `load_trained(RUN).model.decode` (what evaluate uses), raw and EMA, and,
with --bundle, of the exported ONNX bundle's decoders (tools/export_onnx.py, EMA weights).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run_dir", required=True)
    ap.add_argument("--reference", required=True)
    ap.add_argument("--bundle")
    args = ap.parse_args(argv)
    from mmali_tf.run_dir import load_trained

    ref = dict(np.load(args.reference))
    model = load_trained(args.run_dir).model
    z = ref["model/z"]
    for tag, ema in (("model", False), ("model_ema", True)):
        for m in model.modalities:
            diff = np.abs(model.decode(m, z, ema=ema).numpy() - ref[f"{tag}/{m}"]).max()
            print(f"evaluate path ({tag}) decoder {m}: max abs diff {diff:.3g}")
    if args.bundle:
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "export_onnx.py"),
                        f"--run_dir={args.run_dir}", f"--out={args.bundle}", "--overwrite",
                        "--graphs=" + ",".join(f"decoder_{m}" for m in model.modalities)],
                       check=True)
        from mmali_tf.export.runtime import Bundle

        bundle = Bundle(args.bundle)
        for m in model.modalities:
            diff = np.abs(bundle.decode(m, z) - ref[f"model_ema/{m}"]).max()
            print(f"ONNX bundle (EMA weights) decoder {m}: max abs diff {diff:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
