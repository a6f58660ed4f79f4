"""The `text` modality kind: codec, the authors' word rule, spec checks, likelihood, networks,
the trimodal datasets, word-match coherence, sample grids."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import HAND
from mmali_tf import data, networks, text_codec
from mmali_tf.data import pipeline
from mmali_tf.data.specs import ModalitySpec
from mmali_tf.data.text import WordRule
from mmali_tf.metrics.text_classifier import WordClassifier, word_classifier
from mmali_tf.models.vae import common, distributions

RULE = WordRule()
TEXT = RULE.spec()
ALPHABET = text_codec.MMJSD_ALPHABET


def test_codec_round_trip_and_errors():
    x = text_codec.encode(["seven", "", "a b"], ALPHABET, 8)
    assert x.shape == (3, 8, 71) and x.dtype == np.float32
    np.testing.assert_array_equal(x.sum(-1), 1.0)
    assert text_codec.decode(x, ALPHABET) == ["seven   ", "        ", "a b     "]
    assert ALPHABET.index("-") == 36 and ALPHABET.rindex("-") == 59     # authors' duplicate
    assert text_codec.codes(["-"], ALPHABET, 1)[0, 0] == 36
    with pytest.raises(ValueError, match="at most 8 characters"):
        text_codec.encode(["ninetynine"], ALPHABET, 8)
    with pytest.raises(ValueError, match="'S' is not in the alphabet"):
        text_codec.encode(["Seven"], ALPHABET, 8)


def test_edit_distance_and_nearest_word():
    assert text_codec.edit_distance("kitten", "sitting") == 3
    assert text_codec.edit_distance("", "abc") == 3
    words = text_codec.DIGIT_WORDS
    assert text_codec.nearest_word("  sevn  ", words) == 7
    assert text_codec.nearest_word(" eihgt ", words) == 8
    assert text_codec.nearest_word("nine\n", words) == 9
    assert text_codec.nearest_word("        ", words) == 1   # "one"/"two"/"six" tie at 3: first


def test_word_rule_draws_every_start_of_the_authors_range():
    labels = np.repeat(np.arange(10), 200)
    texts = text_codec.decode(RULE.draw(labels, np.random.default_rng(0)), ALPHABET)
    for k, word in enumerate(text_codec.DIGIT_WORDS):
        starts = {t.index(word) for t, y in zip(texts, labels) if y == k}
        # random.randint(0, len_seq - 1 - len(word)) is inclusive: the last character stays a space
        assert starts == set(range(8 - len(word))), word
    assert all(t.strip() == text_codec.DIGIT_WORDS[y] for t, y in zip(texts, labels))


def test_tf_draw_matches_the_rule_and_is_keyed():
    labels = tf.constant(np.repeat(np.arange(10), 100), tf.int32)
    a = RULE.tf_draw(labels, tf.constant([3, 4], tf.int64)).numpy()
    b = RULE.tf_draw(labels, tf.constant([3, 4], tf.int64)).numpy()
    c = RULE.tf_draw(labels, tf.constant([3, 5], tf.int64)).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    texts = text_codec.decode(a, ALPHABET)
    for k, word in enumerate(text_codec.DIGIT_WORDS):
        starts = {t.index(word) for t, y in zip(texts, labels.numpy()) if y == k}
        assert starts == set(range(8 - len(word))), word


def test_text_spec_checks():
    assert TEXT.shape == (8, 71) and TEXT.kind == "text" and TEXT.alphabet == ALPHABET
    assert ModalitySpec.from_dict(TEXT.to_dict()) == TEXT
    assert "alphabet" not in HAND.to_dict()        # other kinds' dicts (and cache keys) unchanged
    with pytest.raises(ValueError, match=r"shape \(L, 3\)"):
        ModalitySpec("t", (8, 71), "text", "text_conv", likelihood="categorical", alphabet="ab ")
    with pytest.raises(ValueError, match="a text modality has a likelihood of"):
        ModalitySpec("t", (8, 3), "text", "mnist_mlp", likelihood="laplace", alphabet="ab ")
    with pytest.raises(ValueError, match="padding space"):
        ModalitySpec("t", (8, 2), "text", "mnist_mlp", likelihood="categorical", alphabet="ab")
    with pytest.raises(ValueError, match="only a text modality"):
        ModalitySpec("h", (28, 28, 1), "image", "mnist_mlp", alphabet="ab ")


def test_text_likelihood_sums_positions_of_log_softmax():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 8, 71)).astype(np.float32)
    x = text_codec.encode(["one", "two", " three", "nine"], ALPHABET, 8)
    got = distributions.log_likelihood(TEXT, tf.constant(logits), tf.constant(x)).numpy()
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    want = (x * log_softmax).sum(axis=(1, 2))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    wrong_axis = (x * (logits - np.log(np.exp(logits).sum(-2, keepdims=True)))).sum(axis=(1, 2))
    assert not np.allclose(got, wrong_axis, rtol=1e-3)


def test_logratio_likelihood_is_the_authors_one_hot_categorical_of_log_softmax():
    """mmJSD's released `OneHotCategorical(log_softmax)` takes log-probabilities as `probs`:
    p = log_softmax / sum(log_softmax), which the decoder outputs and the likelihood scores."""
    spec = RULE.spec(likelihood="categorical_logratio")
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4, 8, 71)).astype(np.float32)
    x = text_codec.encode(["one", "two", " three", "nine"], ALPHABET, 8)
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ratio = log_softmax / log_softmax.sum(-1, keepdims=True)
    got = distributions.log_likelihood(spec, tf.constant(logits), tf.constant(x)).numpy()
    np.testing.assert_allclose(got, (x * np.log(ratio)).sum(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(networks.logsoftmax_ratio(logits).numpy(), ratio, rtol=1e-5)
    dec = networks.build_decoder(spec, 20)
    z = rng.normal(size=(3, 20)).astype(np.float32)
    probs = dec(z).numpy()
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(probs, networks.logsoftmax_ratio(
        networks.decoder_logits(dec)([z])).numpy(), rtol=1e-6)
    again = keras.models.model_from_json(dec.to_json())    # the activation serialises by name
    again.set_weights(dec.get_weights())
    np.testing.assert_allclose(again(z).numpy(), probs, rtol=1e-6)


def test_likelihood_weights_count_text_positions():
    from conftest import PRINT
    weights = common.likelihood_weights([HAND, PRINT, TEXT])
    assert weights == pytest.approx({"hand": 3072 / 784, "print": 1.0, "text": 3072 / 8})


def test_text_networks_shapes_and_checks():
    enc = networks.build_encoder(TEXT, 40)
    dec = networks.build_decoder(TEXT, 20)
    x = text_codec.encode(["seven"], ALPHABET, 8)
    assert enc(x).shape == (1, 40)
    probs = dec(np.zeros((3, 20), np.float32)).numpy()
    assert probs.shape == (3, 8, 71)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    # layer sizes of the authors' EncoderText / DecoderText at dim = 64 (2*dim channels)
    assert [w.shape for w in enc.weights[::2]] == [(1, 71, 128), (4, 128, 128), (4, 128, 128),
                                                   (128, 40)]
    assert [w.shape for w in dec.weights[::2]] == [(20, 128), (4, 128, 128), (4, 128, 128),
                                                   (1, 128, 71)]
    critic = networks.build_xz_critic(TEXT, 20, 4)
    assert critic([x, np.zeros((1, 20), np.float32)]).shape == (1, 4)
    assert networks.build_joint_critic([HAND, TEXT, TEXT])([np.zeros((2, 28, 28, 1)), x.repeat(2, 0),
                                                            x.repeat(2, 0)]).shape == (2, 1)
    long = ModalitySpec("t", (16, 71), "text", "text_conv", likelihood="categorical",
                        alphabet=ALPHABET)
    with pytest.raises(ValueError, match=r"needs a text modality of shape \(8, A\)"):
        networks.build_encoder(long, 4)


@pytest.fixture(scope="module")
def digits_text():
    return data.load("digits_text", {"data_multiplication": 2, "seed": 1})


def test_digits_text_pairs_words_with_their_class(digits_text):
    ds = digits_text
    assert ds.modalities == ("hand", "print", "text") and ds.spec("text") == TEXT
    for split in (ds.train, ds.test):
        texts = text_codec.decode(split.instances["text"], ALPHABET)
        assert [t.strip() for t in texts] == [text_codec.DIGIT_WORDS[y]
                                              for y in split.labels["text"]]
        for k in range(3):
            assert np.array_equal(split.labels[ds.modalities[k]][split.pairs[:, k]],
                                  split.pair_labels())


def test_training_stream_redraws_text_and_resumes_exactly(digits_text):
    ds = digits_text
    stream = iter(pipeline.train_batches(ds, 64, 1, seed=5, unpaired_pool=True))
    batches = [next(stream) for _ in range(3)]
    resumed = next(iter(pipeline.train_batches(ds, 64, 1, seed=5, start_step=2,
                                               unpaired_pool=True)))
    for key in ("text", "text_unpaired", "hand"):
        np.testing.assert_array_equal(resumed[key].numpy(), batches[2][key].numpy())
    texts = text_codec.decode(batches[0]["text"].numpy(), ALPHABET)
    assert [t.strip() for t in texts] == [text_codec.DIGIT_WORDS[y]
                                          for y in batches[0]["label"].numpy()]
    # drawn afresh: the stored drawings are not what training sees
    stored = ds.train.instances["text"][ds.train.pairs[:, 2]]
    drawn = np.concatenate([b["text"].numpy() for b in batches])
    labels = np.concatenate([b["label"].numpy() for b in batches])
    starts = {(y, t.index(text_codec.DIGIT_WORDS[y]))
              for y, t in zip(labels, text_codec.decode(drawn, ALPHABET))}
    assert len(starts) > 30 and stored.dtype == bool


def test_word_classifier_scores_words_and_misspellings(digits_text):
    clf = word_classifier(digits_text, "text")
    assert clf.test_accuracy == 1.0
    x = text_codec.encode(["  sevn", "eihgt", "zer0"], ALPHABET, 8)
    np.testing.assert_array_equal(clf.predict(x), [7, 8, 0])
    probs = 0.9 * x + 0.1 / 71
    np.testing.assert_array_equal(WordClassifier("text", ALPHABET, RULE.words).predict(probs),
                                  [7, 8, 0])


def test_mnist_svhn_text_from_files(tmp_path):
    from test_data_loaders import write_mnist, write_svhn

    rng = np.random.default_rng(0)
    write_mnist(tmp_path / "mnist", rng, gz=True)
    write_svhn(tmp_path, rng)
    ds = data.load("mnist_svhn_text", {"data_dir": str(tmp_path), "data_multiplication": 2})
    assert ds.modalities == ("mnist", "svhn", "text") and ds.redraw["text"] == RULE
    for split in (ds.train, ds.test):
        assert len(split.instances["text"]) == len(split.instances["mnist"])
        words = [t.strip() for t in text_codec.decode(split.instances["text"][split.pairs[:, 2]],
                                                      ALPHABET)]
        assert words == [text_codec.DIGIT_WORDS[y] for y in split.pair_labels()]
    with pytest.raises(FileNotFoundError, match="SVHN file"):
        data.load("mnist_svhn_text", {"data_dir": str(tmp_path / "mnist")})
    released = data.load("mnist_svhn_text", {"data_dir": str(tmp_path), "data_multiplication": 2,
                                             "text_likelihood": "categorical_logratio"})
    assert [s.likelihood for s in released.specs] == ["laplace", "laplace",
                                                      "categorical_logratio"]


def test_sample_grid_shows_text_as_strings():
    from mmali_tf import plots

    tiles = plots.display_images(TEXT, text_codec.encode(["seven", "  one"], ALPHABET, 8))
    assert tiles.shape[0] == 2 and tiles.shape[-1] == 3
    assert tiles.min() < 0.2 and tiles.max() == 1.0           # dark glyphs on white
    assert not np.array_equal(tiles[0], tiles[1])


def test_reports_show_generated_text_as_strings(digits_text):
    from mmali_tf.evaluate import text_generations
    from mmali_tf.metrics import report
    from mmali_tf.metrics.coherence import class_examples

    rows = class_examples(digits_text, "test")
    texts = text_codec.encode(["zero", "one", "twoo"] + ["nine"] * (len(rows) - 3), ALPHABET, 8)
    generations = {"hand->text": (np.zeros((len(rows), 28, 28, 1)), texts),
                   "text->hand": (texts, np.zeros((len(rows), 28, 28, 1)))}
    shown = text_generations(digits_text, "test", generations)
    assert list(shown) == ["hand->text"]
    assert shown["hand->text"][:3] == ["class 0 => 'zero    '", "class 1 => 'one     '",
                                       "class 2 => 'twoo    '"]
    metrics = {"latent_accuracy": {}, "joint_coherence": {"all": 0.5}, "cross_coherence": {},
               "synergy_coherence": {}, "classifier_accuracy": {"text": 1.0},
               "meta": {"text_generations": shown}}
    assert "`class 2 => 'twoo    '`" in report.render_report(metrics)


def test_trimodal_suite_table_has_every_cross_pair():
    from mmali_tf.repro import many_modalities

    mods = ("hand", "print", "text")
    cross = {f"{a}->{b}": 0.1 * (i + 1) for i, (a, b) in
             enumerate((a, b) for a in mods for b in mods if a != b)}
    metrics = {"latent_accuracy": {m: {"both": 0.9} for m in mods},
               "cross_coherence": cross, "joint_coherence": {"all": 0.4},
               "subset_coherence": {"by_size": {"1": 0.5, "2": 0.6}},
               "prediction_stats": {"cross/text->hand": {"top_share": 0.9, "top_class": 1,
                                                         "entropy_bits": 0.1}}}
    records = [{"metrics": metrics}]
    cols = many_modalities.columns(records)
    assert cols[1:7] == list(cross) and cols[-1] == many_modalities.JOINT
    cells = dict(zip(cols, many_modalities.cells(records[0], cols)))
    assert cells["hand->print"] == "10.00" and cells["text->hand"] == "50.00 (collapsed)"
    assert cells["subset coherence 2"] == "60.00"
