"""Import a checkpoint written by the authors' PyTorch code into a run directory.

    python tools/import_reference.py --checkpoint=authors.pt --flagfile=configs/mnist_svhn_mmali.cfg \
        --run_dir=runs/imported

`--checkpoint`: the authors' `.pt`/`.pth` (reading it needs torch) or an `.npz` of its state_dict
(keys `model/<name>`, `model_ema/<name>`, `n_iter`, or a plain state_dict). The training flags
(usually a --flagfile) say which model and networks to build. The run directory then works with
`python -m mmali_tf.evaluate`, tools/export_onnx.py and tools/translate.py. A missing, extra or
misshaped tensor prints one line naming it and both shapes, exits 2 and writes nothing.
"""

from __future__ import annotations



from absl import app, flags

from mmali_tf import cli
from mmali_tf.cli import quiet_tf
from mmali_tf import flags as mmali_flags

FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    cli.reject_positional(argv)
    if not FLAGS.checkpoint:
        cli.fail("--checkpoint is required: the authors' .pt/.pth file or an .npz of it")
    from mmali_tf.train import config_from_flags

    quiet_tf.import_tensorflow()
    with cli.user_errors():
        from mmali_tf.reference.import_run import write_run

        print(write_run(config_from_flags(), FLAGS.checkpoint))


def run() -> None:
    mmali_flags.define_train_flags()
    flags.DEFINE_string("checkpoint", None, "The authors' checkpoint (.pt/.pth, or .npz).")
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
