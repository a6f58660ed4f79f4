"""JMVAE joint encoders q(z | x_1..x_M): raw `[mean | logvar]` parameters, shape (None, out_dim).

* Two image modalities of at most 32x32 with 1 or 3 channels (MNIST-SVHN, digits): the
  contrastive paper's Table 4 network (Shi et al. ICLR 2021, Table 4). Each image is zero-padded to
  32x32 (centred) and grey images are replicated to 3 channels; the two are concatenated along
  the width (32x64x3) -> Conv 4x4 s2 same 32, 64, 128 ReLU (4x8) -> Conv (1,4) s(1,2) same
  128 ReLU (4x4) -> Conv 4x4 valid out_dim -> flatten.
* Any other combination: every modality goes through its own family encoder to 256 features
  (ReLU), the features are concatenated -> Dense 512 ReLU -> Dense out_dim.
Inputs are a list in modality order.
"""

from __future__ import annotations

import keras

from mmali_tf.networks import build_encoder
from mmali_tf.networks.init import conv2d, dense, initializers

SIZE = 32
FEATURES = 256
HIDDEN = 512


def _image_pair(specs) -> bool:
    return len(specs) == 2 and all(
        s.kind == "image" and len(s.shape) == 3 and s.shape[0] <= SIZE and s.shape[1] <= SIZE
        and s.shape[2] in (1, 3) for s in specs)


def _to_32x32x3(x, shape):
    h, w, c = shape
    top, left = (SIZE - h) // 2, (SIZE - w) // 2
    x = keras.layers.ZeroPadding2D(((top, SIZE - h - top), (left, SIZE - w - left)))(x)
    return keras.layers.Concatenate(axis=-1)([x, x, x]) if c == 1 else x


def _conv_pair(inputs, specs, out_dim: int, init: str):
    h = keras.layers.Concatenate(axis=2)([_to_32x32x3(x, s.shape)
                                          for x, s in zip(inputs, specs)])   # 32x64x3
    for filters in (32, 64, 128):
        h = conv2d(h, filters, 4, 2, "same", init, "relu")                   # -> 4x8x128
    h = keras.layers.Conv2D(128, (1, 4), strides=(1, 2), padding="same", activation="relu",
                            **initializers(init, 4 * int(h.shape[-1])))(h)  # -> 4x4x128
    return keras.layers.Flatten()(conv2d(h, out_dim, 4, 1, "valid", init))


def _feature_concat(inputs, specs, out_dim: int, init: str):
    feats = [keras.layers.ReLU()(build_encoder(s, FEATURES, init=init,
                                               name=f"joint_{s.name}_features")(x))
             for x, s in zip(inputs, specs)]
    h = dense(keras.layers.Concatenate()(feats), HIDDEN, init, "relu")
    return dense(h, out_dim, init)


def build_joint_encoder(specs, out_dim: int, init: str = "torch",
                        name: str = "joint_encoder") -> keras.Model:
    """[x_1, ..., x_M] -> (None, out_dim) raw parameters of q(z | x_1..x_M)."""
    if len(specs) < 2:
        raise ValueError(f"a joint encoder needs at least 2 modalities, got {len(specs)}")
    if out_dim < 1:
        raise ValueError(f"joint encoder out_dim must be >= 1, got {out_dim}")
    inputs = [keras.Input(s.shape, name=s.name) for s in specs]
    body = _conv_pair if _image_pair(specs) else _feature_concat
    return keras.Model(inputs, body(inputs, specs, out_dim, init), name=name)
