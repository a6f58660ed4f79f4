"""Reproduction harness: suites of configs trained, evaluated and tabulated by one command
(`python -m mmali_tf.reproduce`). `suites` defines what runs, `runner` trains/evaluates one run
(resuming what exists), `tables` and `claims` render `reproduction/<suite>.md` and README's
generated tables from `reproduction/<suite>.json`. Nothing here imports TensorFlow: training
and evaluation run in child processes."""
