"""Compare evaluated runs of one dataset: one markdown table and one bar chart (paper Table 2).

Thin script over `mmali_tf.cli.compare_runs` (also `python -m mmali_tf.cli.compare_runs`); `--help` lists the flags.
"""

from mmali_tf.cli.compare_runs import run

if __name__ == "__main__":
    run()
