"""The text coherence classifier: mmJSD's 1-D convnet trained on redrawn texts, cached like the
image classifiers, reading offset-blurred probabilities; `--text_scorer` in evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from mmali_tf import data, evaluate, text_codec
from mmali_tf.data.text import WordRule
from mmali_tf.metrics import classifiers, report
from mmali_tf.metrics.text_classifier import WordClassifier

RULE = WordRule()
TEXT = RULE.spec()


@pytest.fixture(scope="module")
def digits_text():
    return data.load("digits_text", {"data_multiplication": 2, "seed": 1})


def blurred_words(rule: WordRule) -> np.ndarray:
    """(C, L, A): each class word's one-hot text averaged over every start the rule draws --
    what a decoder emits when its latent carries the class but not the offset."""
    out = []
    for k, word in enumerate(rule.words):
        starts = np.arange(rule.length - len(word))
        codes = rule.codes(np.full(len(starts), k), starts)
        out.append(text_codec.one_hot(codes, len(rule.alphabet)).mean(0))
    return np.stack(out)


def test_architecture_is_the_authors_text_classifier():
    assert classifiers.architecture(TEXT) == "text_cnn"
    features, head, head_dropout = classifiers.build_networks(TEXT, 10)
    assert head_dropout                          # ClfText's dropout sits before its linear layer
    assert features.output.shape[-1] == 128      # 8 -> 4 -> 1 positions x 2*dim channels
    assert tuple(head(features(np.zeros((2, *TEXT.shape), np.float32))).shape) == (2, 10)
    with pytest.raises(ValueError, match="at least 8 characters"):
        classifiers.build_networks(WordRule(length=6, words=("ab",)).spec(), 10)


def test_trains_on_redrawn_texts_reads_blurred_words_and_is_cached(digits_text, tmp_path):
    ds = digits_text
    args = (TEXT, ds.train.instances["text"], ds.train.labels["text"],
            ds.test.instances["text"], ds.test.labels["text"])
    kwargs = dict(dataset=ds.name, cache_dir=str(tmp_path), epochs=2, batch_size=64, seed=0,
                  redraw=RULE)
    clf, cached = classifiers.load_or_train(*args, **kwargs)
    assert not cached and clf.test_accuracy == 1.0
    labels = np.repeat(np.arange(10), 30)            # fresh drawings: every start of every word
    assert clf.accuracy(RULE.draw(labels, np.random.default_rng(5)), labels) == 1.0
    blur = blurred_words(RULE)
    np.testing.assert_array_equal(clf.predict(blur), np.arange(10))
    noisy = 0.7 * blur + 0.3 / blur.shape[-1]
    np.testing.assert_array_equal(clf.predict(noisy), np.arange(10))
    # the argmax string of a blur is mostly spaces: the nearest word misreads it
    words = WordClassifier("text", RULE.alphabet, RULE.words)
    assert np.mean(words.predict(blur) == np.arange(10)) < 0.5
    again, cached = classifiers.load_or_train(*args, **kwargs)
    assert cached and again.test_accuracy == clf.test_accuracy
    np.testing.assert_array_equal(again.logits(blur).numpy(), clf.logits(blur).numpy())


def test_training_is_seeded_and_redraws_every_epoch(digits_text):
    ds = digits_text
    x, y = ds.train.instances["text"][:200], ds.train.labels["text"][:200]

    def weights(seed: int) -> list[np.ndarray]:
        clf = classifiers.train_classifier(TEXT, x, y, x, y, "reference", 1, 64, seed,
                                           redraw=RULE)
        return clf.features.get_weights()

    assert all(np.array_equal(u, v) for u, v in zip(weights(3), weights(3)))
    epochs = classifiers._epoch_data(x, y, 64, 3, RULE)
    first, second = (np.concatenate([t.numpy() for t, _ in epochs(e)]) for e in (0, 1))
    assert not np.array_equal(first, second)


def _tiny_trained_mmjsd(ds, steps: int = 4):
    from absl import flags

    from mmali_tf import flags as flags_lib
    from mmali_tf import models
    from mmali_tf.data import pipeline

    flags_lib.define_train_flags()
    cfg = {n: flags.FLAGS[n].default for n in flags_lib.train_flag_names()}
    cfg.update(model="mmjsd", dataset="digits_text", latent_dim=8, style_dim=0,
               ema_decay=0.0, jit_compile=False, batch_size=16)
    model = models.build("mmjsd", ds.specs, cfg)
    model.build_from_specs()
    model.compile(jit_compile=False)
    batches = pipeline.train_batches(ds, 16, model.draws_per_step, seed=0)
    model.fit(batches, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    return model


def test_evaluation_writes_the_text_scorer(digits_text, tmp_path):
    ds = digits_text
    model = _tiny_trained_mmjsd(ds)
    opts = evaluate.EvalOptions(num_samples=20, probe_epochs=1, classifier_epochs=1,
                                ll_items=0, seed=0, cache_dir=str(tmp_path))
    metrics, _ = evaluate.evaluate_model(model, ds, opts, step=4)
    meta = metrics["meta"]
    assert meta["text_scorer"] == {"scorer": "classifier",
                                   "test_accuracy": {"text": metrics["classifier_accuracy"]
                                                     ["text"]}}
    assert metrics["classifier_accuracy"]["text"] >= 0.95
    assert "`--text_scorer=classifier`" in report.render_report(metrics)
    old = evaluate.EvalOptions(text_scorer="nearest_word", classifier_epochs=1,
                               cache_dir=str(tmp_path)).resolved()
    scorers, accuracy = evaluate.coherence_classifiers(ds, old)
    assert isinstance(scorers["text"], WordClassifier) and accuracy["text"] == 1.0
    with pytest.raises(ValueError, match="text scorer 'argmax'"):
        evaluate.coherence_classifiers(ds, evaluate.EvalOptions(text_scorer="argmax"))


def test_reports_name_the_text_scorer():
    from absl import flags

    from mmali_tf import flags as flags_lib
    from mmali_tf.repro import many_modalities

    flags_lib.define_eval_flags()
    assert tuple(flags.FLAGS["text_scorer"].parser.enum_values) == tuple(report.TEXT_SCORERS)
    assert flags.FLAGS["text_scorer"].default == next(iter(report.TEXT_SCORERS))
    assert evaluate.EvalOptions().text_scorer == flags.FLAGS["text_scorer"].default
    new = {"text_scorer": {"scorer": "classifier", "test_accuracy": {"text": 1.0}}}
    before = {"text_generations": {"hand->text": ["class 0 => 'zero    '"]}}
    assert [report.text_scorer(m) for m in (new, before, {})] == [
        "classifier", "nearest_word", None]
    metrics = {"latent_accuracy": {"text": {"both": 0.9}}, "classifier_accuracy": {"text": 1.0},
               "joint_coherence": {"all": 0.5}, "cross_coherence": {}}
    legend = many_modalities.legend([{"metrics": {**metrics, "meta": new}}])
    assert report.TEXT_SCORERS["classifier"] in legend
    mixed = many_modalities.legend([{"metrics": {**metrics, "meta": m}} for m in (new, before)])
    assert "classifier / nearest_word" in mixed


def test_harness_redoes_an_evaluation_that_scored_text_otherwise(tmp_path):
    from mmali_tf.repro import runner

    budget = runner.Budget(num_samples=40)
    path = tmp_path / "metrics.json"
    (tmp_path / "per_input.npz").write_bytes(b"")
    base = {"step": 2, "num_prior_samples": 40,
            "probe_min_updates": runner.probe_min_updates("clean")}
    scored = {"text_scorer": {"scorer": "classifier", "test_accuracy": {"text": 1.0}}}
    before = {"text_generations": {"hand->text": []}}           # nearest word, before the flag
    for meta, flags, reused in [({}, [], True), (scored, [], True), (before, [], False),
                                (before, ["--text_scorer=nearest_word"], True),
                                (scored, ["--text_scorer=nearest_word"], False)]:
        report.write_json(str(path), {"meta": {**base, **meta}})
        assert (runner._stored_eval(str(path), 2, budget, flags) is not None) is reused, \
            (meta, flags)
