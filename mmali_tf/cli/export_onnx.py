"""Export a trained run to an ONNX bundle.

    python tools/export_onnx.py --run_dir=runs/digits_mmali --out=bundles/digits_mmali \
        [--opset=17] [--weights=ema|raw] [--step=N] [--overwrite] [--graphs=a,b] \
        [--quantize=static_int8 [--calibration_examples=256]]

Writes `manifest.json` plus one ONNX graph per encoder, decoder, fusion method, ordered
translation pair, reconstruction and the joint generator (see `mmali_tf.export.onnx_export`). The bundle
appears atomically: a failed export leaves nothing behind. Prints the bundle digest (the sha256
of its manifest), also written beside the bundle as `<out>.sha256` (`sha256sum -c` reads it).
With --quantize=static_int8 the bundle written is the int8 version of the float export
(`mmali_tf.export.quantize`), with its fidelity report in the manifest
(`mmali_tf.export.fidelity`: coherence measured with the evaluation's cached classifiers).
Bad input prints one line and exits 2.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from absl import app, flags

from mmali_tf import cli
from mmali_tf.cli import quiet_tf
from mmali_tf import flags as mmali_flags

FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    cli.reject_positional(argv)
    if not FLAGS.out:
        cli.fail("--out is required: the bundle directory to write")
    quiet_tf.import_tensorflow()
    with cli.user_errors():
        from mmali_tf.run_dir import load_trained

        trained = load_trained(FLAGS.run_dir, FLAGS.step)
        from mmali_tf.export import onnx_export

        weights = FLAGS.weights
        if weights == "ema" and trained.model.ema is None:
            print("note: the run has no EMA weights (--ema_decay=0); exporting the raw ones",
                  file=sys.stderr)
            weights = "raw"
        onnx_export.check_export_args(trained.model, FLAGS.out, FLAGS.opset, weights,
                                      FLAGS.overwrite, FLAGS.graphs)
    export = functools.partial(
        onnx_export.export_bundle, trained.model, opset=FLAGS.opset, weights=weights,
        training_flags=trained.config, checkpoint_step=trained.step,
        dataset=trained.dataset_name, overwrite=FLAGS.overwrite, graphs=FLAGS.graphs)
    with cli.disk_full_errors(FLAGS.out):  # the bundle appears whole or not at all
        if FLAGS.quantize == "none":
            manifest = export(FLAGS.out)
        else:
            manifest = export_quantized(trained, export)
    if FLAGS.quantize != "none":
        fid = manifest["quantization"]["fidelity"]
        print(f"int8 fidelity: max |int8 - float| {fid['max_abs_error_translate']:.4f} "
              f"(translate), coherence change at most {fid['max_coherence_change_points']:.2f} "
              f"points ({'within' if fid['coherence_within_2_points'] else 'NOT within'} 2)")
    from mmali_tf.export import manifest as manifest_lib

    digest = manifest_lib.digest_path(FLAGS.out)
    print(f"wrote {FLAGS.out}: {manifest['model']['name']} step {trained.step} ({weights} "
          f"weights), {len(manifest['graphs'])} graphs, opset {FLAGS.opset}")
    print(f"bundle digest {digest.read_text().split()[0]} (in {digest}; pin it with "
          f"--bundle_digest or Bundle(path, digest=...))")


def export_quantized(trained: Any, export: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """Float export into a temporary directory, int8 quantization, fidelity, then the int8
    bundle published at --out (atomically, with its digest)."""
    from mmali_tf import data
    from mmali_tf.config import DataSettings
    from mmali_tf.evaluate import EvalOptions, coherence_classifiers
    from mmali_tf.export import fidelity, onnx_export, quantize
    from mmali_tf.metrics.common import to_float

    ds = data.load(trained.dataset_name, trained.config)
    n = FLAGS.calibration_examples
    xs = {m: to_float(ds.train.instances[m][:n]) for m in ds.train.instances}
    out = Path(FLAGS.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        export(os.path.join(tmp, "float"))
        int8 = Path(tmp) / "int8"
        int8.mkdir()
        quantize.quantize_bundle(os.path.join(tmp, "float"), int8, xs, seed=FLAGS.seed)
        opts = EvalOptions(cache_dir=DataSettings.from_config(trained.config).cache_dir,
                           seed=FLAGS.seed).resolved()
        classifiers, _ = coherence_classifiers(ds, opts)
        report = fidelity.fidelity_report(os.path.join(tmp, "float"), int8, ds, classifiers,
                                          seed=FLAGS.seed)
        manifest = quantize.set_fidelity(int8, report)
        digest_tmp = out.parent / f".{out.name}.sha256.{os.getpid()}"
        onnx_export.publish(int8, out, digest_tmp)
    return manifest


def run() -> None:
    """Console-script entry point (`mmali-export`)."""
    mmali_flags.define_export_flags()
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
