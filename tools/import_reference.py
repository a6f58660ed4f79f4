"""Import a checkpoint written by the authors' PyTorch code into a run directory.

Thin script over `mmali_tf.cli.import_reference` (also `python -m mmali_tf.cli.import_reference`); `--help` lists the flags.
"""

from mmali_tf.cli.import_reference import run

if __name__ == "__main__":
    run()
