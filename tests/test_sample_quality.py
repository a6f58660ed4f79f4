"""Sample quality (FID, PRD) on classifier features: the estimators on known distributions,
the feature bank, and an evaluation of a tiny trained digits model writing both for every
generated image set."""

from __future__ import annotations

import numpy as np
import pytest

from mmali_tf.metrics import sample_quality as sq


def _blobs(n: int = 400, d: int = 8, shift: float = 0.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)) + shift


def test_fid_is_zero_on_a_set_against_itself_and_grows_with_a_shift():
    real = _blobs()
    assert sq.frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)
    # two samples of one distribution: small; a mean shift s adds ~ d s^2
    same = sq.frechet_distance(real, _blobs(seed=1))
    near, far = (sq.frechet_distance(real, _blobs(seed=1, shift=s)) for s in (1.0, 3.0))
    assert same < 1.0 < near < far
    assert near == pytest.approx(same + 8 * 1.0, rel=0.2)
    # a scaled covariance: Tr(S + 4S - 2 * 2S) = Tr(S) = d
    assert sq.frechet_distance(real, 2.0 * real - real.mean(0)) == pytest.approx(8.0, rel=0.05)
    with pytest.raises(ValueError, match="at least 2"):
        sq.frechet_distance(real[:1], real)


def test_prd_of_identical_and_disjoint_distributions():
    real = _blobs()
    same = sq.prd_scores(real, real.copy(), seed=3)
    assert same["precision"] == pytest.approx(1.0, abs=1e-6)
    assert same["recall"] == pytest.approx(1.0, abs=1e-6)
    apart = sq.prd_scores(real, _blobs(seed=1, shift=100.0), seed=3)
    assert apart == {"precision": 0.0, "recall": 0.0, "ap": 0.0}
    # half the generated mass far away: precision drops, recall stays high
    half = np.concatenate([_blobs(200, seed=2), _blobs(200, seed=4, shift=100.0)])
    mixed = sq.prd_scores(real, half, seed=3)
    assert mixed["precision"] < 0.7 < mixed["recall"]
    assert sq.prd_scores(real, half, seed=3) == mixed  # seeded: deterministic
    with pytest.raises(ValueError, match="equally many"):
        sq.prd_scores(real, half[:10])


def test_prd_curve_matches_the_definition_on_two_bins():
    p, r = sq.prd_curve(np.array([1.0, 0.0]), np.array([0.5, 0.5]), num_angles=5)
    slopes = np.tan(np.linspace(sq.PRD_EPS, np.pi / 2 - sq.PRD_EPS, 5))
    np.testing.assert_allclose(p, np.minimum(0.5 * slopes, 1.0))
    np.testing.assert_allclose(r, np.clip(p / slopes, 0, 1))


def test_feature_bank_keeps_the_first_rows_of_image_sets_only():
    bank = sq.FeatureBank(["img"], limit=5)
    for start in (0, 3, 6):
        bank.add("cross/txt->img", "img", np.arange(start, start + 3)[:, None] * np.ones((1, 2)))
        bank.add("joint/txt", "txt", np.ones((3, 2)))
    (key, (modality, x)), = bank.sets().items()
    assert (key, modality) == ("cross/txt->img", "img")
    np.testing.assert_array_equal(x[:, 0], [0, 1, 2, 3, 4])


@pytest.fixture(scope="module")
def digits_eval(tmp_path_factory):
    """A 2-step mmALI run on `digits` (tiny print set), evaluated with FID/PRD on 60 images."""
    from mmali_tf import data, evaluate, train
    from mmali_tf.run_dir import load_trained

    root = tmp_path_factory.mktemp("fid")
    cache = str(root / "cache")
    config = train.make_config(model="mmali", dataset="digits", run_dir=str(root / "run"),
                               max_steps=2, batch_size=8, latent_dim=4, style_dim=2,
                               jit_compile=False, log_every=1, checkpoint_every=2,
                               sample_every=0, digits_print_per_class=20,
                               data_multiplication=1, cache_dir=cache)
    train.train(config, verbose=0)
    trained = load_trained(config["run_dir"])
    ds = data.load(trained.dataset_name, trained.config)
    opts = evaluate.EvalOptions(num_samples=60, probe_epochs=1, classifier_epochs=1,
                                fid_samples=50, ll_items=0, cache_dir=cache)
    metrics, _ = evaluate.evaluate_model(trained.model, ds, opts, step=trained.step)
    return trained, ds, opts, metrics


def test_evaluation_writes_fid_and_prd_for_every_generated_image_set(digits_eval):
    from mmali_tf.metrics import report

    _, _, _, metrics = digits_eval
    report.validate_metrics(metrics)
    sets = set(metrics["prediction_stats"])   # every generated set; both modalities are images
    assert {"joint/hand", "cross/hand->print", "cross/print->hand", "self/print",
            "synergy/model/hand", "subset/1/print"} <= sets
    assert set(metrics["fid"]) == sets == set(metrics["prd"])
    assert all(v > 0 for v in metrics["fid"].values())
    assert all(set(v) == {"precision", "recall", "ap"} for v in metrics["prd"].values())
    meta = metrics["meta"]["sample_quality"]
    assert meta["real_samples"] == {"hand": 50, "print": 40}   # 20 prints a class, 20 % test
    pairs = metrics["meta"]["num_pairs"]
    assert meta["generated_samples"]["joint/print"] == 50   # 60 prior samples, capped
    assert meta["generated_samples"]["cross/hand->print"] == min(pairs, 50)
    assert meta["prd_samples"]["joint/print"] == 40   # balanced to the real set
    assert meta["prd"] == {"num_clusters": 20, "num_angles": 1001, "num_runs": 10, "beta": 8.0,
                           "kmeans_init": 10}
    assert "(50 features)" in meta["embedding"]["hand"]
    assert "(128 features)" in meta["embedding"]["print"]
    text = report.render_report(metrics)
    assert "## Sample quality" in text and "| cross/hand->print |" in text
    assert "not with the Inception FIDs" in text


def test_classifier_features_separate_real_from_shifted_images(digits_eval):
    from mmali_tf.evaluate import coherence_classifiers
    from mmali_tf.metrics.scoring import real_features

    _, ds, opts, _ = digits_eval
    clfs, _ = coherence_classifiers(ds, opts.resolved())
    x = ds.test.instances["print"]
    real = real_features(clfs, {"print": x}, 60, seed=0)["print"]
    other = real_features(clfs, {"print": x}, 60, seed=1)["print"]
    dark = real_features(clfs, {"print": (x // 2).astype(x.dtype)}, 60, seed=0)["print"]
    assert sq.frechet_distance(real, real) == pytest.approx(0.0, abs=1e-3)
    assert sq.frechet_distance(real, other) < sq.frechet_distance(real, dark)
    assert sq.prd_scores(real, real.copy())["recall"] == pytest.approx(1.0, abs=1e-6)


def test_compiled_scoring_predicts_what_eager_decode_and_classify_do(digits_eval):
    import keras

    from mmali_tf.evaluate import coherence_classifiers
    from mmali_tf.metrics.common import InferenceView
    from mmali_tf.metrics.scoring import Scorer

    trained, ds, opts, _ = digits_eval
    clfs, _ = coherence_classifiers(ds, opts.resolved())
    view = InferenceView.of(trained.model)
    bank = sq.FeatureBank(["hand", "print"], 100)
    score = Scorer(view, clfs, bank)
    for n in (7, 33):   # two batch sizes: one trace serves both
        z = view.sample_prior(n, keras.random.SeedGenerator(n))
        for m in ("hand", "print"):
            eager = clfs[m].predict(view.decode(m, z[m]))
            np.testing.assert_array_equal(score(f"joint/{m}", m, z[m]), eager)
            np.testing.assert_allclose(bank.sets()[f"joint/{m}"][1][-n:],
                                       clfs[m].embed(view.decode(m, z[m])).numpy(),
                                       rtol=1e-4, atol=1e-5)
