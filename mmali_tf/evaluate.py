"""Evaluate a trained run: `python -m mmali_tf.evaluate --run_dir=runs/x [--protocol=clean]`.

With `--curve_every=N [--checkpoint_dir=DIR]`: the step curve of the run instead
(`mmali_tf.curve`: coherence of every kept checkpoint at a multiple of N, into curve.json).

Writes `run_dir/eval/<protocol>[_<probe>]/` (`report.eval_dir_name`): `metrics.json` (schema
in `mmali_tf.metrics.report`), `per_input.npz` (`per_input_arrays`: per scored input, whether
it was right, and which distinct test input it was, for error bars), `report.md`,
`cross_generation.png` and `cross_confusion.png`,
so evaluations under different protocols sit side by side. `evaluate_model` is the
programmatic core (any MultimodalModel + PairedDataset).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Mapping, Sequence

import numpy as np
from absl import app, flags

from mmali_tf import cli
from mmali_tf.cli import quiet_tf
from mmali_tf import flags as flags_lib
from mmali_tf.config import DataSettings

FLAGS = flags.FLAGS
#: what each protocol trains when the epoch flags are left unset: `reference` follows the
#: released mmALI scripts (probe 100 epochs, classifiers 100 epochs at batch 256, both with
#: best-test selection; 6b5d/mmali eval_mnist_svhn_latent.py, eval_mnist_svhn_gen.py), `clean` a budget that converges on small datasets
#: (the probe: 30 epochs and at least as many updates as 30 epochs make on MNIST, unless
#: --probe_epochs is given).
PROTOCOL_DEFAULTS = {"clean": {"probe_epochs": 30, "classifier_epochs": 10,
                               "classifier_batch": 64},
                     "reference": {"probe_epochs": 100, "classifier_epochs": 100,
                                   "classifier_batch": 256}}


@dataclasses.dataclass
class EvalOptions:
    """Evaluation settings (the evaluation flags)."""

    protocol: str = "clean"
    num_samples: int = 10000
    split: str = "test"
    weights: str = "ema"
    seed: int = 0
    batch_size: int = 256
    probe_epochs: int | None = None
    probe_min_updates: int | None = None
    latent_probe: str = "shi"
    classifier_epochs: int | None = None
    classifier_batch: int | None = None
    classifier_threshold: float = 0.95
    text_scorer: str = "classifier"
    iwae_samples: int = 100
    ll_items: int = 500
    cca_dim: int = 40
    fid_samples: int = 10000
    cache_dir: str = ""
    verbose: bool = False

    @classmethod
    def from_flags(cls) -> "EvalOptions":
        return cls(protocol=FLAGS.protocol, num_samples=FLAGS.num_samples, split=FLAGS.split,
                   weights=FLAGS.weights, seed=FLAGS.seed, batch_size=FLAGS.eval_batch_size,
                   probe_epochs=FLAGS.probe_epochs, latent_probe=FLAGS.latent_probe,
                   classifier_epochs=FLAGS.classifier_epochs,
                   classifier_threshold=FLAGS.classifier_threshold,
                   text_scorer=FLAGS.text_scorer, iwae_samples=FLAGS.iwae_samples,
                   ll_items=FLAGS.ll_items, cca_dim=FLAGS.cca_dim,
                   fid_samples=FLAGS.fid_samples, cache_dir=FLAGS.cache_dir, verbose=True)

    def resolved(self) -> "EvalOptions":
        """A copy with the protocol's defaults (PROTOCOL_DEFAULTS) filled into unset fields."""
        from mmali_tf.metrics.common import check_protocol

        from mmali_tf.metrics.latent_accuracy import SHI_MNIST_UPDATES

        defaults = PROTOCOL_DEFAULTS[check_protocol(self.protocol)]
        if self.probe_min_updates is None:
            defaults = {**defaults, "probe_min_updates": SHI_MNIST_UPDATES if (
                self.protocol == "clean" and self.probe_epochs is None) else 0}
        return dataclasses.replace(self, **{k: v for k, v in defaults.items()
                                            if getattr(self, k) is None})


def coherence_classifiers(ds: Any, opts: EvalOptions) -> tuple[dict[str, Any], dict[str, float]]:
    """Cached (or freshly trained) classifier per modality and their test accuracies; a text
    modality is scored as `opts.text_scorer` says (`metrics.text_classifier`): a classifier
    trained on texts redrawn with the dataset's rule, or the nearest class word."""
    from mmali_tf.metrics import classifiers as clf_lib
    from mmali_tf.metrics.report import TEXT_SCORERS
    from mmali_tf.metrics.text_classifier import word_classifier, word_rule

    if opts.text_scorer not in TEXT_SCORERS:
        raise ValueError(f"text scorer {opts.text_scorer!r}: expected one of "
                         f"{', '.join(TEXT_SCORERS)}")
    out, acc = {}, {}
    for spec in ds.specs:
        if spec.kind == "text" and opts.text_scorer == "nearest_word":
            out[spec.name] = word_classifier(ds, spec.name)
            acc[spec.name] = out[spec.name].test_accuracy
            continue
        clf, cached = clf_lib.load_or_train(
            spec, ds.train.instances[spec.name], ds.train.labels[spec.name],
            ds.test.instances[spec.name], ds.test.labels[spec.name], ds.name, opts.protocol,
            opts.cache_dir, opts.classifier_epochs, opts.classifier_batch, opts.seed,
            ds.num_classes, opts.verbose,
            redraw=word_rule(ds, spec.name) if spec.kind == "text" else None)
        if opts.verbose:
            print(f"classifier {spec.name}: test accuracy {clf.test_accuracy:.4f} "
                  f"({'cached' if cached else 'trained'})", flush=True)
        out[spec.name], acc[spec.name] = clf, clf.test_accuracy
    return out, acc


def text_scorer_meta(ds: Any, opts: EvalOptions,
                     classifier_accuracy: Mapping[str, float]) -> dict[str, Any]:
    """`meta["text_scorer"]`: the scorer of the text modalities and each one's test accuracy
    (empty without text modalities)."""
    texts = [s.name for s in ds.specs if s.kind == "text"]
    if not texts:
        return {}
    return {"text_scorer": {"scorer": opts.text_scorer,
                            "test_accuracy": {m: classifier_accuracy[m] for m in texts}}}


def evaluate_model(model: Any, ds: Any, opts: EvalOptions, step: int | None = None,
                   classifiers: Mapping[str, Any] | None = None,
                   classifier_accuracy: Mapping[str, float] | None = None
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """All metrics of `model` on `ds`; returns (metrics dict, figure material and the
    `per_input` arrays).

    `classifiers` and `classifier_accuracy` (both, or neither) replace the cached digit
    classifiers (any objects with `predict(x, seed) -> labels`).
    """
    import keras

    from mmali_tf.latent import FUSION_METHODS
    from mmali_tf.metrics import (cca, coherence, latent_accuracy, likelihood, report,
                                  subset_coherence)
    from mmali_tf.metrics.common import InferenceView, sample_rows
    from mmali_tf.metrics.sample_quality import FeatureBank
    from mmali_tf.metrics.scoring import Scorer
    from mmali_tf.plots import display_images

    opts = opts.resolved()
    keras.utils.set_random_seed(opts.seed)
    view = InferenceView.of(model, opts.weights)
    notes = []
    if opts.weights == "ema" and not view.ema:
        notes.append("the run has no EMA networks (--ema_decay=0); raw weights were evaluated")
    if classifiers is None:
        classifiers, classifier_accuracy = coherence_classifiers(ds, opts)
    weak = {m: a for m, a in classifier_accuracy.items() if a < opts.classifier_threshold}
    if weak:
        notes.append("coherence is UNRELIABLE: classifier test accuracy below "
                     f"{opts.classifier_threshold:.2f} for " +
                     ", ".join(f"{m} ({a:.3f})" for m, a in weak.items()))
    split = ds.split(opts.split)
    rows = sample_rows(split.num_pairs, opts.num_samples, opts.seed)
    probe_correct: dict[str, np.ndarray] = {}
    images = [s.name for s in ds.specs
              if s.kind == "image" and hasattr(classifiers[s.name], "embed")]
    bank = FeatureBank(images, opts.fid_samples) if opts.fid_samples > 0 and images else None
    scorer = Scorer(view, classifiers, bank)
    joint_correct: dict[str, np.ndarray] = {}
    metrics: dict[str, Any] = {
        "latent_accuracy": latent_accuracy.latent_accuracy(
            view, ds, opts.split, opts.protocol, opts.probe_epochs, opts.num_samples,
            opts.batch_size, opts.seed, opts.verbose, opts.latent_probe,
            opts.probe_min_updates, record=probe_correct),
        "classifier_accuracy": dict(classifier_accuracy)}
    joint, joint_hist = coherence.joint_coherence(
        view, classifiers, opts.num_samples, opts.batch_size, opts.seed,
        shared_z=opts.protocol == "reference", verbose=opts.verbose, num_classes=ds.num_classes,
        record=joint_correct, scorer=scorer)
    metrics["joint_coherence"] = {"all": joint}
    methods = FUSION_METHODS if view.stochastic else ()
    if not view.stochastic:
        notes.append("deterministic encoders: no joint posterior, so no synergy coherence or "
                     "joint latent probe")
    conditional = coherence.conditional_coherence(
        view, classifiers, ds, opts.split, rows, opts.batch_size, opts.seed, methods,
        opts.verbose, scorer=scorer)
    (metrics["cross_coherence"], metrics["self_coherence"],
     metrics["synergy_coherence"]) = conditional.accuracies()
    metrics["subset_coherence"], subset_hist = subset_coherence.subset_coherence(
        view, classifiers, ds, opts.split, rows, opts.batch_size, opts.seed, opts.verbose,
        scorer=scorer)
    histograms = {f"joint/{m}": h for m, h in joint_hist.items()}
    histograms.update(conditional.histograms())
    histograms.update(subset_hist)
    metrics["prediction_stats"] = {k: coherence.prediction_stats(h)
                                   for k, h in histograms.items()}
    collapsed = report.collapsed_sets(metrics)
    if collapsed:
        notes.append(f"COLLAPSED generations (one class > {report.COLLAPSE_SHARE:.0%} of "
                     f"the samples): {', '.join(collapsed)}; their coherence measures that "
                     "class's share, not the model")
    meta = {"protocol": opts.protocol, "dataset": ds.name, "model": model.variant,
            "step": step, "weights": view.weights, "seed": opts.seed,
            "split": opts.split, "num_pairs": int(len(rows)),
            "num_prior_samples": opts.num_samples, "probe_epochs": opts.probe_epochs,
            "probe_min_updates": opts.probe_min_updates,
            "latent_test_size": {m: int(len(split.labels[m])) for m in view.modalities},
            "latent_probe": opts.latent_probe,
            "classifier_epochs": opts.classifier_epochs,
            "classifier_batch": opts.classifier_batch,
            "classifier_threshold": opts.classifier_threshold,
            **text_scorer_meta(ds, opts, classifier_accuracy),
            "coherence_reliable": not weak, "default_fusion": view.default_fusion,
            "joint_posterior": view.joint_posterior_name if view.stochastic else None,
            "collapsed": collapsed}
    likelihood_based = view.stochastic and (hasattr(model, "log_likelihood_estimate")
                                            or not model.critic_variables)
    if likelihood_based and opts.ll_items > 0:
        ll_rows = sample_rows(split.num_pairs, opts.ll_items, opts.seed + 2)
        metrics["log_likelihood"] = likelihood.log_likelihoods(
            view, ds, opts.split, ll_rows, opts.iwae_samples, opts.seed,
            mixture=view.default_fusion == "moe_mean", verbose=opts.verbose)
        meta.update(iwae_samples=opts.iwae_samples, ll_items=int(len(ll_rows)))
    vectors = [s.name for s in ds.specs if s.kind == "vector"]
    if len(vectors) >= 2:
        metrics["cca_correlation"] = cca.cca_correlations(
            view, ds, vectors[0], vectors[1], opts.split, rows, opts.cca_dim, opts.batch_size,
            opts.seed, opts.num_samples, per_batch_mean=opts.protocol == "reference")
        meta["cca_modalities"] = vectors[:2]
        meta["cca_dim"] = min(opts.cca_dim, ds.spec(vectors[0]).size, ds.spec(vectors[1]).size)
    if bank is not None:
        metrics["fid"], metrics["prd"], meta["sample_quality"] = sample_quality_metrics(
            bank, classifiers, split, opts, ds.spec)
    meta["notes"] = notes
    metrics["meta"] = meta
    generations = coherence.cross_generations(view, ds, opts.split, opts.seed)
    texts = text_generations(ds, opts.split, generations)
    if texts:
        meta["text_generations"] = texts
    figures = {"per_input": per_input_arrays(split, view.modalities, rows, probe_correct,
                                             joint_correct["all"], conditional.correct_rows()),
               "confusion": conditional.confusion(),
               "generations": {k: tuple(display_images(ds.spec(m), x)
                                        for m, x in zip(k.split("->"), v))
                               for k, v in generations.items()
                               if all(ds.spec(m).kind != "vector" for m in k.split("->"))}}
    return metrics, figures


def sample_quality_metrics(bank: Any, classifiers: Mapping[str, Any], split: Any,
                           opts: EvalOptions, spec: Any
                           ) -> tuple[dict[str, float], dict[str, dict[str, float]],
                                      dict[str, Any]]:
    """(fid, prd, meta) of every generated image set in `bank` against the split's real
    instances of its modality (`metrics.sample_quality`), with the settings that produced
    them."""
    from mmali_tf.metrics import classifiers as clf_lib
    from mmali_tf.metrics import sample_quality as sq
    from mmali_tf.metrics.scoring import real_features

    real = real_features(classifiers, {m: split.instances[m] for m in sorted(bank.modalities)},
                         opts.fid_samples, opts.seed + 9, opts.batch_size)
    generated = bank.sets()
    fid, prd, prd_samples = sq.sample_quality(generated, real, opts.seed)
    meta = {"embedding": {m: f"{clf_lib.architecture(spec(m))} coherence classifier, "
                             f"penultimate layer ({x.shape[1]} features)"
                          for m, x in real.items()},
            "real_samples": {m: int(len(x)) for m, x in real.items()},
            "generated_samples": {k: int(len(x)) for k, (_, x) in generated.items()},
            "prd_samples": prd_samples, "fid_samples": opts.fid_samples,
            "prd": {"num_clusters": sq.PRD_CLUSTERS, "num_angles": sq.PRD_ANGLES,
                    "num_runs": sq.PRD_RUNS, "beta": sq.PRD_BETA,
                    "kmeans_init": sq.PRD_KMEANS_INIT},
            "note": sq.COMPARABILITY}
    return fid, prd, meta


def per_input_arrays(split: Any, modalities: Sequence[str], rows: np.ndarray,
                     probes: Mapping[str, np.ndarray], joint: np.ndarray,
                     conditional: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`<set>/correct` (bool per scoring) and `<set>/input` (int64 id of the distinct test
    input scored) for every probe (`latent/<m>/<part>`: test instance; `latent/joint/...`:
    one of the distinct test pairs probed), joint coherence (`joint/all`: prior sample) and
    conditional set (`cross/a->b` and `self/a`: the source's test instance; `synergy/...`:
    the pair row)."""
    out: dict[str, np.ndarray] = {}

    def put(key: str, correct: np.ndarray, inputs: np.ndarray) -> None:
        out[f"{key}/correct"] = np.asarray(correct, bool)
        out[f"{key}/input"] = np.asarray(inputs, np.int64)

    for key, correct in probes.items():
        put(f"latent/{key}", correct, np.arange(len(correct)))
    put("joint/all", joint, np.arange(len(joint)))
    instance = {m: split.pairs[rows, k] for k, m in enumerate(modalities)}
    for key, correct in conditional.items():
        kind, _, name = key.partition("/")
        source = name.split("->")[0] if kind in ("cross", "self") else None
        put(key, correct, instance[source] if source else rows)
    return out


def text_generations(ds: Any, split: str,
                     generations: Mapping[str, Any]) -> dict[str, list[str]]:
    """{"a->b": ["<source> => <generated>", ...]} for the pairs with a text target (one
    example per class): text shown as its decoded string, an image source as its class."""
    from mmali_tf import text_codec
    from mmali_tf.metrics.coherence import class_examples

    labels = ds.split(split).pair_labels()[class_examples(ds, split)]
    out = {}
    for key, arrays in generations.items():
        specs = [ds.spec(m) for m in key.split("->")]
        if specs[1].kind != "text":
            continue
        shown = [[repr(t) for t in text_codec.decode(x, s.alphabet)] if s.kind == "text"
                 else [f"class {y}" for y in labels] for s, x in zip(specs, arrays)]
        out[key] = [f"{a} => {b}" for a, b in zip(*shown)]
    return out


def write_outputs(out_dir: str, metrics: Mapping[str, Any], figures: Mapping[str, Any]) -> None:
    """metrics.json (validated), per_input.npz, report.md and the PNG figures, each written
    atomically."""
    import io

    from mmali_tf.data.cache import atomic_write_bytes
    from mmali_tf.metrics import report

    report.validate_metrics(metrics)
    if "per_input" in figures:
        buf = io.BytesIO()
        np.savez_compressed(buf, **figures["per_input"])
        atomic_write_bytes(os.path.join(out_dir, "per_input.npz"), buf.getvalue())
    report.write_json(os.path.join(out_dir, "metrics.json"), metrics)
    report.write_text(os.path.join(out_dir, "report.md"), report.render_report(metrics))
    report.confusion_figure(figures["confusion"], os.path.join(out_dir, "cross_confusion.png"))
    if figures["generations"]:
        report.cross_grid_figure(figures["generations"],
                                 os.path.join(out_dir, "cross_generation.png"))


def main(argv: Sequence[str]) -> None:
    """absl main: load the run and its dataset, evaluate, write run_dir/eval/."""
    cli.reject_positional(argv)
    opts = EvalOptions.from_flags()
    quiet_tf.import_tensorflow()
    with cli.user_errors():
        if not os.path.isdir(FLAGS.run_dir):
            raise FileNotFoundError(f"--run_dir={FLAGS.run_dir}: no such directory")
        curve_job = prepare_curve() if FLAGS.curve_every or FLAGS.checkpoint_dir else None
    if curve_job is not None:
        write_curve(opts, *curve_job)
        return
    with cli.user_errors():
        from mmali_tf import data
        from mmali_tf.run_dir import load_trained

        trained = load_trained(FLAGS.run_dir, FLAGS.eval_step)
        ds = data.load(trained.dataset_name, trained.config)
        if not opts.cache_dir:
            opts.cache_dir = DataSettings.from_config(trained.config).cache_dir
    with cli.disk_full_errors():  # classifier caches and the outputs
        metrics, figures = evaluate_model(trained.model, ds, opts, step=trained.step)
        from mmali_tf.metrics.report import eval_dir_name

        out_dir = os.path.join(FLAGS.run_dir, "eval",
                               eval_dir_name(opts.protocol, opts.latent_probe))
        write_outputs(out_dir, metrics, figures)
    print(f"Wrote {out_dir}/metrics.json, report.md and figures "
          f"(protocol {opts.protocol}, step {trained.step})", flush=True)


def prepare_curve() -> tuple[Any, dict[str, Any], Any, str]:
    """`--curve_every`'s checks and loading: (model built from run.json, its config, its
    dataset, the checkpoint directory); ValueError / FileNotFoundError for the user."""
    from mmali_tf import curve, data
    from mmali_tf.run_dir import rebuild

    if not FLAGS.curve_every:
        raise ValueError("--checkpoint_dir needs --curve_every=N")
    if FLAGS.eval_step is not None:
        raise ValueError("--eval_step and --curve_every exclude each other (a curve "
                         "evaluates every kept step)")
    checkpoint_dir = FLAGS.checkpoint_dir or os.path.join(FLAGS.run_dir, "checkpoints")
    if not curve.curve_checkpoints(checkpoint_dir, FLAGS.curve_every):
        raise FileNotFoundError(f"--checkpoint_dir={checkpoint_dir}: no ckpt-<step> "
                                f"checkpoint at a multiple of {FLAGS.curve_every} (train with "
                                f"--keep_checkpoint_every={FLAGS.curve_every})")
    model, config = rebuild(FLAGS.run_dir)
    return model, config, data.load(str(config["dataset"]), config), checkpoint_dir


def write_curve(opts: EvalOptions, model: Any, config: dict[str, Any], ds: Any,
                checkpoint_dir: str) -> None:
    """The step curve of the run (`mmali_tf.curve`) into eval/<protocol>/curve.json."""
    from mmali_tf import curve
    from mmali_tf.metrics.report import eval_dir_name

    if not opts.cache_dir:
        opts.cache_dir = DataSettings.from_config(config).cache_dir
    opts = opts.resolved()
    out = os.path.join(FLAGS.run_dir, "eval", eval_dir_name(opts.protocol, opts.latent_probe),
                       curve.CURVE_FILE)
    with cli.disk_full_errors():  # classifier caches and curve.json
        classifiers, accuracy = coherence_classifiers(ds, opts)
        result = curve.evaluate_curve(model, ds, checkpoint_dir, FLAGS.curve_every, opts,
                                      classifiers, accuracy, out)
    print(f"Wrote {out} ({len(result['points'])} steps"
          + (f", {len(result['skipped'])} damaged checkpoints skipped" if result["skipped"]
             else "") + ")", flush=True)


def run(argv: Sequence[str] | None = None) -> None:
    """Console script `mmali-evaluate`."""
    flags_lib.define_eval_flags()
    app.run(main, argv=list(argv) if argv is not None else sys.argv, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
