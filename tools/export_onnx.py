"""Export a trained run to an ONNX bundle.

Thin script over `mmali_tf.cli.export_onnx` (also `python -m mmali_tf.cli.export_onnx`); `--help` lists the flags.
"""

from mmali_tf.cli.export_onnx import run

if __name__ == "__main__":
    run()
