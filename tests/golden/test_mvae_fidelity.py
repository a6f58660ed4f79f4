"""MVAE against the authors' code (mhw32/multimodal-vae-public, mnist/: image + digit label).

Same start weights, batches and reparameterisation draws: at the first iteration the three
ELBOs their training step sums (joint, image only, label only), each one's reconstruction and
KL parts, the loss and every gradient; over 5 iterations of their `train()` loop body (with its
KL annealing factor 1/4, 1/2, 1, 1, 1) our real `train_step` must give the same loss, every
weight and every Adam slot after every iteration (fixture from tools/golden/make_fixtures.py
--mvae; hidden widths narrowed as recorded, full width for the import round trip). Our setting: `mvae` on the
`mnist_label` dataset's modalities (a `swish_mlp` image with `bernoulli_logits`, lambda 1; a
`swish_embedding` one-hot label with `categorical`, lambda 10), latent 64, beta 1,
`kl_anneal_steps` equal to their annealing length in steps and `mvae_kl_full_step` one epoch
earlier (their loop's factor is 1 during the last warm-up epoch).

Known differences, equal at the fixture's values: our encoders clip log-variances to +-10
(a guard against PoE precision blow-up), theirs do not; their `ProductOfExperts` adds 1e-8 to every variance twice and
to the product's, ours is computed in log space without it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from golden_fixtures import Fixture, narrow_networks, term_mismatches
from mmali_tf import latent as latent_lib
from mmali_tf.data.mnist_label import DIGIT, IMAGE
from mmali_tf.data.specs import ModalitySpec
from mmali_tf.models.draws import ReplayDraws
from mmali_tf.models.vae import distributions as dists
from mmali_tf.models.vae import objectives as obj
from mmali_tf.models.vae.mvae import MVAE
from mmali_tf.reference import golden
from mmali_tf.reference.import_run import write_run
from mmali_tf.reference.mappings import TorchLayout, import_state_dict
from mmali_tf.run_dir import load_trained
from trajectories import run_mismatches

GRAD_RTOL = 1e-4
CASE = "mvae_mnist_label"
#: the authors' modalities: MNIST image (Bernoulli on logits) and a one-hot digit label
SPECS = (IMAGE, DIGIT)


def test_dataset_weights_are_the_authors_lambdas():
    assert [s.likelihood_weight for s in SPECS] == Fixture(CASE).meta["lambdas"]


def authors_state(fx: Fixture, shapes_key: str = "weight_shapes") -> dict[str, np.ndarray]:
    """The authors' starting weights (their state_dict keys) of the trajectory's narrowed
    networks, or with `shapes_key="full_weight_shapes"` of their full-width ones."""
    shapes = [(k, tuple(s)) for k, s in fx.meta[shapes_key]]
    return golden.seeded_weights(shapes, fx.meta["seed"], fx.meta["stddev"],
                                 fx.meta["bias_stddev"])


def build(fx: Fixture) -> tuple[MVAE, TorchLayout]:
    meta = fx.meta
    with narrow_networks(meta["narrow"]):
        model = MVAE(SPECS, dict(meta["config"], seed=0))
        model.build_from_specs()
    model.compile()
    shapes = {k: tuple(v) for k, v in meta["weight_shapes"]}
    import_state_dict(model, authors_state(fx))
    model.draws = ReplayDraws(fx.group("it1/draw/"))
    return model, TorchLayout(model, shapes)


def subset_terms(model: MVAE, batch: dict, eps: np.ndarray, factor: float) -> dict[str, float]:
    """The authors' per-subset terms (ELBO, unweighted reconstructions, KL) from our networks
    and pure functions on the same draws; subsets in our order: joint, image, digit."""
    means, logvars = model.encode_all(batch)
    masks, _ = model.subset_masks()
    mu, lv = obj.masked_product_of_experts(means, logvars, masks, prior_expert=True)
    z = mu + latent_lib.scale_from_logvar(lv) * eps
    out = {}
    for t, subset in enumerate(("joint",) + model.modalities):
        kl = tf.reduce_mean(latent_lib.gaussian_kl_standard(mu[t], lv[t]))
        elbo = factor * kl
        for i, m in enumerate(model.modalities):
            if masks[t, i]:
                rec = -tf.reduce_mean(model.log_lik(m, model.decode_many(m, z[t]), batch[m],
                                                    weighted=False))
                out[f"rec_{subset}_{m}"] = rec
                elbo += model.lambdas[m] * rec
        out[f"kl_{subset}"], out[f"elbo_{subset}"] = kl, elbo
    return {k: float(v) for k, v in out.items()}


def test_trajectory_matches_authors():
    fx = Fixture(CASE)
    model, layout = build(fx)
    batch = {m: tf.constant(v) for m, v in fx.group("it1/batch/").items()}
    want = fx.group("it1/term/")
    factor = float(model.kl_weight())
    assert abs(factor - want.pop("annealing_factor")) < 1e-7, factor
    got = subset_terms(model, batch, fx.group("it1/draw/")["eps"], factor)
    grads, loss, terms = model.compute_gradients(batch)
    got["loss"] = float(loss)
    problems = term_mismatches(got, want)
    # our logged aggregates against the authors' parts: sum of lambda-weighted
    # reconstructions and of the subsets' KLs
    lam = dict(zip(model.modalities, fx.meta["lambdas"]))
    agg_want = {"recon": sum(lam[k.rsplit("_", 1)[1]] * v for k, v in want.items()
                             if k.startswith("rec_")),
                "kl": sum(v for k, v in want.items() if k.startswith("kl_"))}
    problems += term_mismatches({k: float(terms[k]) for k in agg_want}, agg_want)
    problems += run_mismatches(fx, model, layout, grads, GRAD_RTOL)
    assert not problems, "\n".join(problems)


def test_likelihoods_on_logits_match_authors_up_to_saturation():
    """`bernoulli_logits` is their `binary_cross_entropy_with_logits` and `categorical` their
    `cross_entropy` (per entry), for logits up to +-40 where a sigmoid output saturates."""
    probes = Fixture(CASE).group("likelihood/")
    problems = []
    for probe, name, event in (("bernoulli", "bernoulli_logits", (16,)),
                               ("categorical", "categorical", (10,))):
        spec = ModalitySpec("x", event, "vector", "mnist_mlp", likelihood=name)
        logits, target = probes[f"{probe}_logits"], probes[f"{probe}_target"]
        got = -dists.log_likelihood(spec, tf.constant(logits), tf.constant(target)).numpy()
        want = probes[f"{probe}_nll"].sum(axis=1)
        bad = ~np.isclose(got, want, rtol=1e-5, atol=1e-5)
        problems += [f"{name} row {i}: ours {got[i]:.8g}, authors' {want[i]:.8g}"
                     for i in np.flatnonzero(bad)]
    assert not problems, "\n".join(problems)


def test_sigmoid_bernoulli_differs_from_authors_when_saturated():
    """Why `bernoulli_logits` exists: the clamped-probability `bernoulli` on the decoder's
    sigmoid output is not the authors' likelihood once |logit| > ~14."""
    probes = Fixture(CASE).group("likelihood/")
    logits, target = probes["bernoulli_logits"], probes["bernoulli_target"]
    spec = ModalitySpec("x", (16,), "vector", "mnist_mlp", likelihood="bernoulli")
    got = -dists.log_likelihood(spec, tf.sigmoid(tf.constant(logits)), tf.constant(target))
    want = probes["bernoulli_nll"].sum(axis=1)
    assert np.max(np.abs(got.numpy() - want) / np.abs(want)) > 1e-2


def test_kl_warm_up_ends_an_epoch_early_as_the_authors_loop():
    """Their loop's factor is 1 from the first step of the last warm-up epoch
    (`epoch < annealing_epochs`); `--mvae_kl_full_step = kl_anneal_steps - steps per epoch`
    reproduces it, the plain linear warm-up does not."""
    fx = Fixture(CASE)
    want = fx.group("anneal/")["factor"]
    full = fx.meta["config"]["kl_anneal_steps"] - fx.meta["steps_per_epoch"]
    got = {}
    for full_step in (0, full):
        model = MVAE(SPECS, dict(fx.meta["config"], seed=0, mvae_kl_full_step=full_step))
        model.compile()
        factors = []
        for step in range(len(want)):
            model.g_optimizer.iterations.assign(step)
            factors.append(float(model.anneal_factor()))
        got[full_step] = np.array(factors)
    np.testing.assert_allclose(got[full], want, rtol=1e-6,
                               err_msg="KL annealing factor per step vs the authors' loop")
    assert not np.allclose(got[0], want), "the plain warm-up should differ in the last epoch"


def test_imported_run_decodes_like_the_authors(tmp_path):
    """The import CLI's core on the `mnist_label` dataset: their state_dict becomes a run
    directory whose decoders give their decoders' means."""
    fx = Fixture(CASE)
    ckpt = tmp_path / "authors.npz"
    np.savez(ckpt, **authors_state(fx, "full_weight_shapes"))
    run_dir = str(tmp_path / "run")
    write_run(dict(fx.meta["config"], dataset="mnist_label", run_dir=run_dir, seed=0,
                   keep_checkpoints=1), str(ckpt))
    model = load_trained(run_dir).model
    assert model.specs == SPECS
    want = fx.group("decoded/")
    for m in model.modalities:
        np.testing.assert_allclose(model.decode(m, want["z"]).numpy(), want[m], rtol=1e-5,
                                   atol=1e-6, err_msg=f"decoder {m}")
