"""Network builders: parameter counts of the authors' networks, shapes, ranges, sub-models, init, saving."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from mmali_tf.data.specs import ModalitySpec
from mmali_tf.networks import (SNConv2D, SNDense, build_decoder, build_encoder,
                               build_joint_critic, build_joint_xz_critic, build_xz_critic)

MNIST = ModalitySpec("mnist", (28, 28, 1), "image", "mnist_mlp")
SVHN = ModalitySpec("svhn", (32, 32, 3), "image", "svhn_conv")
CAP = ModalitySpec("cap", (1024,), "vector", "feature_mlp")
IMG = ModalitySpec("img", (2048,), "vector", "feature_mlp")
SMALL = ModalitySpec("vec", (64,), "vector", "feature_mlp", value_range=(-3.0, 3.0))
POLY = ModalitySpec("m0", (28, 28, 3), "image", "mmvaeplus_resnet")


def _count(model: keras.Model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@pytest.mark.parametrize("build, expected", [
    (lambda: build_encoder(MNIST, 40), 330_040),
    (lambda: build_decoder(MNIST, 20), 322_784),
    (lambda: build_encoder(SVHN, 40), 247_560),
    (lambda: build_decoder(SVHN, 20), 206_563),
    (lambda: build_xz_critic(MNIST, 20, 3), 323_203),
    (lambda: build_xz_critic(MNIST, 20, 1), 322_401),
    (lambda: build_xz_critic(MNIST, 20, 5), 324_005),
    (lambda: build_xz_critic(SVHN, 20, 3), 2_339_299),
    (lambda: build_xz_critic(SVHN, 20, 1), 2_337_249),
    (lambda: build_joint_critic([MNIST, SVHN]), 1_238_384),
    (lambda: build_joint_critic([MNIST] * 4), 3_766_849),
    (lambda: build_joint_xz_critic([MNIST] * 4, 50, 5), 4_156_149),
    (lambda: build_encoder(CAP, 128, "torch"), 705_536),
    (lambda: build_decoder(CAP, 64, "torch"), 698_240),
    (lambda: build_encoder(IMG, 128), 2_787_200),
    (lambda: build_decoder(IMG, 64), 2_772_736),
    (lambda: build_xz_critic(CAP, 64, 3), 863_491),
    (lambda: build_xz_critic(CAP, 64, 1), 862_465),
    (lambda: build_xz_critic(IMG, 64, 3), 3_166_723),
    (lambda: build_xz_critic(IMG, 64, 1), 3_165_697),
    (lambda: build_joint_critic([CAP, IMG]), 3_985_921),
    # epalu/mmvaeplus vae_polymnist.py: Enc(32, 32), Dec(64); without style, one trunk: the
    # z trunk and heads of their Enc(., 16) alone
    (lambda: build_encoder(POLY, 128, "torch", style_dim=32), 2_946_048),
    (lambda: build_decoder(POLY, 64, "torch"), 1_485_251),
    (lambda: build_encoder(POLY, 32, "torch"), 1_071_584),
])
def test_parameter_counts_match_spec_table(build, expected):
    assert _count(build()) == expected


def test_spectral_norm_vectors_are_non_trainable_and_optional():
    sn, plain = build_xz_critic(SVHN, 20, 3), build_xz_critic(SVHN, 20, 3, spectral_norm=False)
    assert _count(plain) == _count(sn)
    names = {w.name for w in sn.non_trainable_weights}
    assert names == {"sn_u", "sn_v"} and len(sn.non_trainable_weights) == 2 * 9
    assert not plain.non_trainable_weights


def _batch(spec: ModalitySpec, n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, size=(n,) + spec.shape).astype("float32")


def _z(dim: int, n: int = 3, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype("float32")


@pytest.mark.parametrize("spec", [MNIST, SVHN, SMALL,
                                  ModalitySpec("mono", (32, 32, 1), "image", "svhn_conv")])
@pytest.mark.parametrize("init", ["normal", "torch"])
def test_encoder_decoder_shapes_and_ranges(spec, init):
    enc = build_encoder(spec, 14, init)
    assert enc(_batch(spec)).shape == (3, 14)
    dec = build_decoder(spec, 7, init, name="dec")
    assert dec.name == "dec"
    out = np.asarray(dec(_z(7) * 50))
    assert out.shape == (3,) + spec.shape
    if spec.kind == "image":
        assert out.min() >= 0.0 and out.max() <= 1.0
    else:
        assert out.min() < 0.0  # linear output, not squashed


def test_decoder_rescales_sigmoid_to_value_range():
    spec = dataclasses.replace(MNIST, value_range=(-1.0, 1.0))
    out = np.asarray(build_decoder(spec, 5)(_z(5) * 1e4))
    assert out.min() >= -1.0 and out.max() <= 1.0 and out.min() < -0.5


@pytest.mark.parametrize("spec, dim", [(MNIST, 20), (SVHN, 20), (CAP, 64)])
def test_xz_critic_equals_head_of_x_features(spec, dim):
    critic = build_xz_critic(spec, dim, 3)
    x, z = _batch(spec), _z(dim)
    logits = np.asarray(critic([x, z]))
    assert logits.shape == (3, 3)
    h = critic.get_layer("x_features")(x)
    np.testing.assert_allclose(critic.get_layer("head")([h, tf.constant(z)]), logits, rtol=1e-5, atol=1e-6)
    # reuse of one feature batch against several z
    z2 = _z(dim, seed=7)
    np.testing.assert_allclose(critic.get_layer("head")([h, tf.constant(z2)]), critic([x, z2]),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("specs", [[MNIST, SVHN], [MNIST] * 3, [CAP, IMG], [SMALL, MNIST]])
def test_joint_critic_equals_combine_of_branches(specs):
    critic = build_joint_critic(specs)
    xs = [_batch(s, seed=i) for i, s in enumerate(specs)]
    logit = np.asarray(critic(xs))
    assert logit.shape == (3, 1)
    feats = [critic.get_layer(f"branch_{i}")(x) for i, x in enumerate(xs)]
    np.testing.assert_allclose(critic.get_layer("combine")(feats), logit, rtol=1e-5, atol=1e-6)
    perm = [2, 0, 1]  # in-batch shuffled negatives from permuted features
    shuffled = [feats[0]] + [tf.gather(f, perm) for f in feats[1:]]
    np.testing.assert_allclose(critic.get_layer("combine")(shuffled),
                               critic([xs[0]] + [x[perm] for x in xs[1:]]), rtol=1e-5, atol=1e-6)


def test_dot_critic_is_bilinear_in_projections():
    critic = build_joint_critic([MNIST, SVHN])
    combine = critic.get_layer("combine")
    assert any(isinstance(l, keras.layers.Dot) for l in combine.layers)
    assert not any(isinstance(l, keras.layers.Dot)
                   for l in build_joint_critic([MNIST] * 3).get_layer("combine").layers)


def test_joint_xz_critic_equals_head_of_branches():
    specs = [MNIST, MNIST, SVHN]
    critic = build_joint_xz_critic(specs, 12, 4)
    xs, z = [_batch(s, seed=i) for i, s in enumerate(specs)], _z(12)
    logits = np.asarray(critic(xs + [z]))
    assert logits.shape == (3, 4)
    feats = [critic.get_layer(f"branch_{i}")(x) for i, x in enumerate(xs)]
    np.testing.assert_allclose(critic.get_layer("head")(feats + [tf.constant(z)]), logits, rtol=1e-5,
                               atol=1e-6)


def test_critic_activations_are_leaky_relu_0_2():
    critic = build_xz_critic(SVHN, 20, 3)
    layers = [l for sub in ("x_features", "head") for l in critic.get_layer(sub).layers]
    leaky = [l for l in layers if isinstance(l, keras.layers.LeakyReLU)]
    assert len(leaky) == 8 and all(l.negative_slope == pytest.approx(0.2) for l in leaky)
    assert sum(isinstance(l, (SNDense, SNConv2D)) for l in layers) == 9


def test_training_call_runs_power_iteration_inference_does_not():
    critic = build_xz_critic(MNIST, 20, 1)
    v = critic.get_layer("head").layers[-1].sn_v  # (400,); u of a 1-unit layer is +-1
    before = v.numpy()
    critic([_batch(MNIST), _z(20)], training=False)
    np.testing.assert_array_equal(v.numpy(), before)
    critic([_batch(MNIST), _z(20)], training=True)
    assert not np.allclose(v.numpy(), before)


def _kernels_and_biases(model):
    kernels = [w.numpy() for w in model.trainable_weights if w.name == "kernel"]
    biases = [w.numpy() for w in model.trainable_weights if w.name == "bias"]
    return kernels, biases


@pytest.mark.parametrize("build", [lambda: build_encoder(SVHN, 40),
                                   lambda: build_decoder(SVHN, 20),
                                   lambda: build_xz_critic(MNIST, 20, 3)])
def test_normal_init_statistics(build):
    keras.utils.set_random_seed(0)
    kernels, biases = _kernels_and_biases(build())
    flat = np.concatenate([k.ravel() for k in kernels])
    assert abs(flat.std() - 0.02) < 5e-4 and abs(flat.mean()) < 5e-4
    assert all(np.all(b == 0) for b in biases)


def test_torch_init_bounds():
    keras.utils.set_random_seed(0)
    enc, dec = build_encoder(SVHN, 40, "torch"), build_decoder(SVHN, 20, "torch")
    # (layer, PyTorch fan_in): conv fan_in = k*k*in, transposed conv fan_in = k*k*out
    expected = [(enc, [16 * 3, 16 * 32, 16 * 64, 16 * 128]),
                (dec, [16 * 128, 16 * 64, 16 * 32, 16 * 3])]
    for model, fan_ins in expected:
        kernels, biases = _kernels_and_biases(model)
        for k, b, fan_in in zip(kernels, biases, fan_ins, strict=True):
            bound = 1.0 / np.sqrt(fan_in)
            assert np.abs(k).max() <= bound and np.abs(k).max() > 0.9 * bound
            assert np.abs(b).max() <= bound and np.abs(b).std() > 0
            np.testing.assert_allclose(k.std(), bound / np.sqrt(3), rtol=0.05)  # U(-a, a)


def test_clone_and_keras_file_round_trip(tmp_path):
    keras.utils.set_random_seed(0)
    critic = build_xz_critic(SVHN, 20, 3)
    x, z = _batch(SVHN), _z(20)
    for _ in range(2):
        critic([x, z], training=True)
    expected = np.asarray(critic([x, z]))
    clone = keras.models.clone_model(critic)
    clone.set_weights(critic.get_weights())
    np.testing.assert_allclose(clone([x, z]), expected, rtol=1e-6, atol=1e-7)
    assert clone.get_layer("x_features") is not critic.get_layer("x_features")
    path = tmp_path / "critic.keras"
    critic.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded([x, z]), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(loaded([x, z], training=True), critic([x, z], training=True),
                               rtol=1e-5, atol=1e-6)
    assert loaded.get_layer("head").get_layer(index=-1).__class__ is SNDense


@pytest.mark.parametrize("call, match", [
    (lambda: build_encoder(MNIST, 10, init="xavier"), "unknown init 'xavier'"),
    (lambda: build_decoder(SVHN, 0), "latent_dim must be a positive integer"),
    (lambda: build_encoder(ModalitySpec("s", (28, 28, 3), "image", "svhn_conv"), 4),
     "'svhn_conv' needs shape"),
    (lambda: build_decoder(ModalitySpec("f", (4,), "vector", "feature_mlp"), 4),
     "'feature_mlp' needs a vector"),
    (lambda: build_xz_critic(MNIST, 20, 2.5), "out_dim must be a positive integer"),
    (lambda: build_encoder(POLY, 9), "out_dim must be even"),
    (lambda: build_encoder(POLY, 8, style_dim=4), r"style_dim must be in \[0, 4\)"),
    (lambda: build_joint_critic([MNIST]), "at least 2 modality specs"),
    (lambda: build_joint_xz_critic([MNIST], 0, 2), "z_dim must be a positive integer"),
])
def test_bad_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_unknown_family_names_valid_values():
    bogus = dataclasses.replace(MNIST)
    object.__setattr__(bogus, "network", "resnet")
    with pytest.raises(ValueError, match=r"unknown network family 'resnet'.*mnist_mlp"):
        build_encoder(bogus, 4)


@pytest.mark.parametrize("strides,activation", [(1, "relu"), (2, None)])
def test_conv2d_transpose_of_a_1x1_map_as_matmul_equals_keras(strides, activation):
    from mmali_tf.networks.init import Conv2DTranspose

    x = tf.random.stateless_normal((6, 1, 1, 5), seed=(7, 8))
    ours = Conv2DTranspose(8, 4, strides=strides, padding="valid", activation=activation,
                           bias_initializer="random_normal")
    keras_layer = keras.layers.Conv2DTranspose(8, 4, strides=strides, padding="valid",
                                               activation=activation)
    y = ours(x)
    keras_layer.build(x.shape)
    keras_layer.set_weights(ours.get_weights())
    np.testing.assert_allclose(y, keras_layer(x), rtol=1e-5, atol=1e-6)
    assert ours.name.startswith("conv2d_transpose")  # Keras' names: checkpoints unchanged
    with tf.GradientTape() as tape:  # gradients of the matrix product equal the conv's
        a = tf.reduce_sum(tf.square(ours(x)))
    with tf.GradientTape() as tape_k:
        b = tf.reduce_sum(tf.square(keras_layer(x)))
    for g, h in zip(tape.gradient(a, ours.trainable_variables),
                    tape_k.gradient(b, keras_layer.trainable_variables)):
        np.testing.assert_allclose(g, h, rtol=1e-4, atol=1e-5)
