"""mmJSD and mmJSD-MS against the authors' code (thomassutter/mmjsd, VAEtrimodalSVHNMNIST).

Same start weights, batches and reparameterisation draws: at the first iteration every term
the authors' `run_epoch` logs (loss, per-modality reconstruction errors, content/style KLs, the
JS `group_div`, the KL of the selected joint and of the dynamic prior) and every
encoder/decoder gradient; over 5 iterations of their loop with its KL annealing
(`kl_annealing` = 2 epochs of 2 batches: beta = 1e-4, 1e-4, beta/2 + 1e-4, beta/2 + 1e-4, beta)
our real `train_step` (`--kl_anneal_steps=4 --mmjsd_kl_epoch_steps=2`) must give the same loss,
every weight and every Adam slot after every iteration (fixtures from
tools/golden/make_fixtures.py --mmjsd, networks narrowed as recorded). Settings (see tools/golden/mmjsd_case.py): two 28x28
modalities with the authors' MNIST networks (`*_mnist_pair`), or MNIST and SVHN with their own
networks (`mmjsd_mnist_svhn`: their SVHN convnet, no output sigmoid, is our `mmjsd_svhn`
family); their reconstruction weights (3072/784, 1) and uniform JS weights 1/3. And their
whole MNIST-SVHN-Text model (`mmjsd_mnist_svhn_text`): text (8, 71) one-hot through their
1-D convnets (our `text_conv`) with their text likelihood (our `categorical_logratio`: their
`OneHotCategorical` takes the decoder's log-softmax as its probabilities), reconstruction
weights (3072/784, 1, 3072/8) and JS weights 1/4.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from golden_fixtures import Fixture, narrow_networks, term_mismatches
from mmali_tf import latent as latent_lib
from mmali_tf.data.svhn import MNIST, SVHN
from mmali_tf.data.text import WordRule
from mmali_tf.models.draws import ReplayDraws
from mmali_tf.models.vae import objectives as obj
from mmali_tf.models.vae.mmjsd import MMJSD
from mmali_tf.reference import golden
from mmali_tf.reference.mappings import TorchLayout, import_state_dict
from trajectories import run_mismatches

GRAD_RTOL = 1e-4


def build(fx: Fixture, **overrides) -> tuple[MMJSD, dict]:
    meta = fx.meta
    second = (dataclasses.replace(SVHN, network=meta["svhn_network"]) if "svhn_network" in meta
              else dataclasses.replace(MNIST, name="svhn"))
    specs = [MNIST, second]
    if "text" in meta:  # their text networks and likelihood (OneHotCategorical(log_softmax))
        specs.append(dataclasses.replace(WordRule().spec("text"),
                                         likelihood="categorical_logratio"))
    specs = [dataclasses.replace(s, likelihood_weight=w)
             for s, w in zip(specs, meta["rec_weights"], strict=True)]
    with narrow_networks(meta["narrow"]):
        model = MMJSD(specs, dict(meta["config"], seed=0, **overrides))
        model.build_from_specs()
    model.compile()
    shapes = {k: tuple(v) for k, v in meta["weight_shapes"]}
    import_state_dict(model, golden.seeded_weights(shapes.items(), meta["seed"], meta["stddev"],
                                                   meta["bias_stddev"]))
    model.draws = ReplayDraws(fx.group("it1/draw/"))
    return model, shapes


def logged_terms(model: MMJSD, batch: dict, eps: np.ndarray) -> dict[str, float]:
    """The authors' logged per-modality terms, from our networks and pure functions."""
    lay, mods = model.layout, model.modalities
    params = [model.encode_train(m, batch[m]) for m in mods]
    means = tf.stack([p[0] for p in params])
    logvars = tf.stack([p[1] for p in params])
    z = means + latent_lib.scale_from_logvar(logvars) * eps
    sel = model.selection(tf.shape(means)[1])[:, :, None]
    content = tf.reduce_sum(sel * lay.content(z), axis=0)
    out = {}
    for i, m in enumerate(mods):
        tag = f"M{i + 1}"
        x_hat = model.decode_many(m, lay.join(lay.style(z[i]), content))
        out[f"rec_{tag}"] = -tf.reduce_mean(model.log_lik(m, x_hat, batch[m], weighted=False))
        out[f"kld_content_{tag}"] = tf.reduce_mean(
            latent_lib.gaussian_kl_standard(lay.content(means[i]), lay.content(logvars[i])))
        if model.uses_style:
            out[f"kld_style_{tag}"] = tf.reduce_mean(
                latent_lib.gaussian_kl_standard(lay.style(means[i]), lay.style(logvars[i])))
    group = [tf.reduce_sum(sel * lay.content(t), axis=0) for t in (means, logvars)]
    out["kld_group"] = tf.reduce_mean(latent_lib.gaussian_kl_standard(*group))
    dyn = obj.geometric_dynamic_prior([lay.content(t) for t in tf.unstack(means)],
                                      [lay.content(t) for t in tf.unstack(logvars)])
    out["kld_dyn_prior"] = tf.reduce_mean(latent_lib.gaussian_kl_standard(*dyn))
    return {k: float(v) for k, v in out.items()}


@pytest.mark.parametrize("case", ["mmjsd_mnist_pair", "mmjsd_ms_mnist_pair", "mmjsd_mnist_svhn",
                                  "mmjsd_mnist_svhn_text"])
def test_trajectory_matches_authors(case):
    fx = Fixture(case)
    model, shapes = build(fx)
    batch = {m: tf.constant(v) for m, v in fx.group("it1/batch/").items()}
    want = {k: v for k, v in fx.group("it1/term/").items() if k != "beta"}
    got = logged_terms(model, batch, fx.group("it1/draw/")["eps"])
    grads, loss, terms = model.compute_gradients(batch)
    got.update(loss=float(loss), group_div=float(terms["js"]))
    problems = term_mismatches(got, want)
    # our aggregate terms against the authors' composition of theirs (run_epoch)
    tags = [f"M{i + 1}" for i in range(len(model.modalities))]
    agg_want = {"recon": sum(w * want[f"rec_{t}"]
                             for w, t in zip(fx.meta["rec_weights"], tags))}
    if model.uses_style:
        agg_want["kl_style"] = sum(want[f"kld_style_{t}"] for t in tags)
    problems += term_mismatches({k: float(terms[k]) for k in agg_want}, agg_want)
    problems += run_mismatches(fx, model, TorchLayout(model, shapes), grads, GRAD_RTOL)
    assert not problems, "\n".join(problems)


def test_kl_weight_is_the_authors_annealing():
    """Our beta_t at every iteration's step equals run_epoch's beta of that epoch."""
    fx = Fixture("mmjsd_mnist_pair")
    model, _ = build(fx)
    got, want = [], []
    for t in range(1, fx.meta["iterations"] + 1):
        model.g_optimizer.iterations.assign(t - 1)
        got.append(float(model.kl_weight()))
        want.append(float(fx.group(f"it{t}/term/")["beta"]))
    assert np.allclose(got, want, rtol=1e-6, atol=0), (got, want)
    assert len(set(want)) == 3, want  # warm-up epochs 0 and 1, then beta


def test_beta_content_weighs_the_js_without_style():
    """run_epoch adds beta * beta_content * group_div in both variants: plain mmJSD too."""
    fx = Fixture("mmjsd_mnist_pair")
    batch = {m: tf.constant(v) for m, v in fx.group("it1/batch/").items()}
    loss = {}
    for beta_content in (1.0, 3.0):  # without the warm-up: the full beta
        model, _ = build(fx, beta_content=beta_content, kl_anneal_steps=0,
                         mmjsd_kl_epoch_steps=0)
        loss[beta_content] = float(model.objective(batch)[0])
    want = 2.0 * fx.meta["config"]["beta"] * float(fx.group("it1/term/")["group_div"])
    assert abs((loss[3.0] - loss[1.0]) - want) <= 1e-3 * abs(want), (loss, want)
