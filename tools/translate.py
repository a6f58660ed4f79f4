"""Translate between modalities with an exported bundle: file in, file out, no TensorFlow.

Thin script over `mmali_tf.cli.translate` (also `python -m mmali_tf.cli.translate`); `--help` lists the flags.
"""

from mmali_tf.cli.translate import run

if __name__ == "__main__":
    run()
