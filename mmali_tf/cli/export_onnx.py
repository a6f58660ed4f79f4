"""Export a trained run to an ONNX bundle.

    python tools/export_onnx.py --run_dir=runs/digits_mmali --out=bundles/digits_mmali \
        [--opset=17] [--weights=ema|raw] [--step=N] [--overwrite] [--graphs=a,b]

Writes `manifest.json` plus one ONNX graph per encoder, decoder, fusion method, ordered
translation pair, reconstruction and the joint generator (see `mmali_tf.export.onnx_export`). The bundle
appears atomically: a failed export leaves nothing behind. Prints the bundle digest (the sha256
of its manifest), also written beside the bundle as `<out>.sha256` (`sha256sum -c` reads it).
Bad input prints one line and exits 2.
"""

from __future__ import annotations

import sys


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
    manifest = onnx_export.export_bundle(
        trained.model, FLAGS.out, opset=FLAGS.opset, weights=weights,
        training_flags=trained.config, checkpoint_step=trained.step,
        dataset=trained.dataset_name, overwrite=FLAGS.overwrite, graphs=FLAGS.graphs)
    from mmali_tf.export import manifest as manifest_lib

    digest = manifest_lib.digest_path(FLAGS.out)
    print(f"wrote {FLAGS.out}: {manifest['model']['name']} step {trained.step} ({weights} "
          f"weights), {len(manifest['graphs'])} graphs, opset {FLAGS.opset}")
    print(f"bundle digest {digest.read_text().split()[0]} (in {digest}; pin it with "
          f"--bundle_digest or Bundle(path, digest=...))")


def run() -> None:
    """Console-script entry point (`mmali-export`)."""
    mmali_flags.define_export_flags()
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
