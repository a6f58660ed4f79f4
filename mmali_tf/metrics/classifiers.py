"""Pre-trained per-modality digit classifiers used to score coherence.

Architectures follow the reference evaluation code (6b5d/mmali eval_mnist_svhn_gen.py; iffsid/mmvae src/report/analyse_ms.py) and are chosen from the
ModalitySpec's kind and shape, never from its network family (`architecture`): the MNIST CNN
for grey images of at least 16x16, an SVHN-style CNN for any other image (stride-2 blocks until
the map is at most 4x4, then a 'valid' block to 1x1: exactly the SVHN classifier at 32x32), an
MLP for vectors and mmJSD's 1-D residual convnet for text (`text_classifier.text_cnn_features`;
thomassutter/mmjsd networks/ConvNetworkTextClf.py), trained on texts redrawn every epoch with
the dataset's rule (`redraw`) so it sees every start position of every word. Each network is
split into `features` and a linear `head`; the dropout between them is the one the reference
MNIST classifier applies functionally (always on) -- the `reference` protocol reproduces that
(and the reference dropout rate 0.5), `clean` switches it off at inference and trains with rate
0.1, which converges in a few epochs on small datasets.

A classifier is trained once per (dataset contents, modality, protocol, epochs, seed) and
cached with `mmali_tf.data.cache` (an `.npz` of weights plus a JSON sidecar holding its sha256);
a corrupt cache entry is retrained.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from mmali_tf.data.specs import ModalitySpec
from mmali_tf.metrics.common import check_protocol, instance_batches
from mmali_tf.metrics.text_classifier import text_cnn_features
from mmali_tf.data.cache import cache_root, cached_arrays

ARCH_VERSION = 3
#: smallest side of a grey image the MNIST CNN takes (two 5x5 valid convolutions + pools).
MNIST_CNN_MIN_SIDE = 16
CONV_FILTERS = (32, 64, 64)
VAL_FRACTION = 0.1
#: dropout rate of every dropout layer while training, per protocol. The reference rate (0.5
#: after every layer) needs tens of epochs on small datasets; dropout is off at inference in
#: `clean` anyway, so `clean` trains with a light rate.
DROPOUT = {"clean": 0.1, "reference": 0.5}


def architecture(spec: ModalitySpec) -> str:
    """`mnist_cnn`, `conv`, `mlp` or `text_cnn`: the classifier of a modality, from its kind
    and shape."""
    if spec.kind == "text":
        return "text_cnn"
    if spec.kind == "vector" or len(spec.shape) != 3:
        return "mlp"
    height, width, channels = spec.shape
    if channels == 1 and min(height, width) >= MNIST_CNN_MIN_SIDE:
        return "mnist_cnn"
    return "conv"


def _conv_block(x: Any, filters: int, padding: str, rate: float, kernel: Any = 4,
                strides: int = 2) -> Any:
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding)(x)
    x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)
    x = keras.layers.Dropout(rate)(x)
    return keras.layers.ReLU()(x)


def build_networks(spec: ModalitySpec, num_classes: int,
                   rate: float = 0.5) -> tuple[keras.Model, keras.Model, bool]:
    """(features, head, head_dropout) for a modality; head_dropout: a dropout of `rate` sits
    before the head during training (and, for the reference MNIST classifier, at test time)."""
    inp = keras.Input(spec.shape)
    arch = architecture(spec)
    if arch == "mnist_cnn":
        x = keras.layers.Conv2D(10, 5)(inp)
        x = keras.layers.ReLU()(keras.layers.MaxPooling2D(2)(x))
        x = keras.layers.SpatialDropout2D(rate)(keras.layers.Conv2D(20, 5)(x))
        x = keras.layers.ReLU()(keras.layers.MaxPooling2D(2)(x))
        x = keras.layers.Dense(50, activation="relu")(keras.layers.Flatten()(x))
        dropout = True
    elif arch == "conv":
        x, block = inp, 0
        while max(x.shape[1], x.shape[2]) > 4:
            x = _conv_block(x, CONV_FILTERS[min(block, len(CONV_FILTERS) - 1)], "same", rate)
            block += 1
        x = _conv_block(x, 128, "valid", rate, kernel=tuple(x.shape[1:3]), strides=1)
        x = keras.layers.Flatten()(x)
        dropout = False
    elif arch == "text_cnn":  # the authors' dropout sits before their linear layer
        x, dropout = text_cnn_features(inp), True
    else:
        x = keras.layers.Flatten()(inp)
        x = keras.layers.Dense(256, activation="relu")(x)
        x = keras.layers.Dense(128, activation="relu")(x)
        dropout = True
    features = keras.Model(inp, x, name=f"clf_features_{spec.name}")
    head_in = keras.Input(features.output.shape[1:])
    head = keras.Model(head_in, keras.layers.Dense(num_classes)(head_in),
                       name=f"clf_head_{spec.name}")
    return features, head, dropout


@dataclasses.dataclass
class DigitClassifier:
    """A trained classifier of one modality.

    Attributes:
      always_on_dropout: dropout rate applied before the head at prediction time (the
        reference MNIST classifier's quirk; 0 under the clean protocol).
      test_accuracy: accuracy on the dataset's test instances, in the protocol's mode.
    """

    modality: str
    features: keras.Model
    head: keras.Model
    always_on_dropout: float
    test_accuracy: float = float("nan")

    def embed(self, x: Any) -> tf.Tensor:
        """Penultimate features (the input of the head) of a batch of model-range inputs."""
        return self.features(tf.convert_to_tensor(x, tf.float32), training=False)

    def head_logits(self, h: Any, seed: Any = None) -> tf.Tensor:
        """Logits from penultimate features (with the protocol's always-on dropout)."""
        if self.always_on_dropout > 0.0:
            h = keras.random.dropout(h, self.always_on_dropout, seed=seed)
        return self.head(h, training=False)

    def logits(self, x: Any, seed: Any = None) -> tf.Tensor:
        return self.head_logits(self.embed(x), seed)

    def predict_features(self, h: Any, seed: Any = None) -> np.ndarray:
        """Predicted class from penultimate features (`embed`)."""
        return np.argmax(self.head_logits(h, seed).numpy(), axis=-1).astype(np.int32)

    def predict(self, x: Any, seed: Any = None) -> np.ndarray:
        """Predicted class of a batch of model-range inputs."""
        return self.predict_features(self.embed(x), seed)

    def accuracy(self, x: np.ndarray, y: np.ndarray, seed: Any = None,
                 batch_size: int = 512) -> float:
        preds = np.concatenate([self.predict(b, seed) for b in instance_batches(x, batch_size)])
        return float(np.mean(preds == y))


def _fingerprint(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()


def _uint8_to_unit(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.cast(x, tf.float32) / 255.0, y


def _epoch_data(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int,
                redraw: Any) -> Callable[[int], tf.data.Dataset]:
    """The training batches of each epoch: `x` reshuffled (seeded), or, with a text rule
    `redraw`, a fresh drawing of every label's text in a fresh order (numpy rng [seed, epoch])."""
    y = y.astype(np.int32)
    if redraw is not None:
        def drawn(epoch: int) -> tf.data.Dataset:
            rng = np.random.default_rng([seed, epoch])
            order = rng.permutation(len(y))
            texts = redraw.draw(y[order], rng).astype(np.float32)
            return tf.data.Dataset.from_tensor_slices((texts, y[order])).batch(batch_size)
        return drawn
    data = (tf.data.Dataset.from_tensor_slices((x, y))
            .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
            .batch(batch_size))
    if x.dtype == np.uint8:
        data = data.map(_uint8_to_unit)
    return lambda epoch: data


def _train(spec: ModalitySpec, x: np.ndarray, y: np.ndarray, x_sel: np.ndarray,
           y_sel: np.ndarray, protocol: str, epochs: int, batch_size: int, seed: int,
           num_classes: int, verbose: bool, redraw: Any) -> DigitClassifier:
    keras.utils.set_random_seed(seed)
    rate = DROPOUT[protocol]
    features, head, dropout = build_networks(spec, num_classes, rate)
    inp = keras.Input(spec.shape)
    h = features(inp)
    if dropout:
        h = keras.layers.Dropout(rate)(h)
    net = keras.Model(inp, head(h))
    net.compile(keras.optimizers.Adam(1e-3),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    epoch_data = _epoch_data(x, y, batch_size, seed, redraw)
    clf = DigitClassifier(spec.name, features, head,
                          rate if (protocol == "reference" and architecture(spec) == "mnist_cnn")
                          else 0.0)
    sel_seed = keras.random.SeedGenerator(seed)
    best, best_weights = -1.0, None
    for epoch in range(epochs):
        net.fit(epoch_data(epoch), epochs=1, verbose=0, shuffle=False)  # shuffled, seeded
        acc = clf.accuracy(x_sel, y_sel, sel_seed)
        if verbose:
            print(f"  classifier {spec.name}: epoch {epoch + 1}/{epochs} selection accuracy "
                  f"{acc:.4f}", flush=True)
        if acc >= best:  # ties: prefer the longer-trained network
            best, best_weights = acc, net.get_weights()
    net.set_weights(best_weights)
    return clf


def train_classifier(spec: ModalitySpec, x_train: np.ndarray, y_train: np.ndarray,
                     x_test: np.ndarray, y_test: np.ndarray, protocol: str = "clean",
                     epochs: int = 10, batch_size: int = 256, seed: int = 0,
                     num_classes: int = 10, verbose: bool = False,
                     redraw: Any = None) -> DigitClassifier:
    """Train a classifier, keeping its best epoch.

    `clean` selects the epoch on a validation split carved from train (VAL_FRACTION, seeded);
    `reference` selects it on test accuracy, as the released code does. With a text rule
    `redraw` (`data.text.WordRule`) every epoch trains on a fresh drawing of the training
    labels' texts instead of the stored `x_train`.
    """
    check_protocol(protocol)
    if protocol == "clean":
        order = np.random.default_rng(seed).permutation(len(x_train))
        n_val = max(1, int(round(VAL_FRACTION * len(x_train))))
        val, tr = np.sort(order[:n_val]), np.sort(order[n_val:])
        x_fit, y_fit, x_sel, y_sel = x_train[tr], y_train[tr], x_train[val], y_train[val]
    else:
        x_fit, y_fit, x_sel, y_sel = x_train, y_train, x_test, y_test
    clf = _train(spec, x_fit, y_fit, x_sel, y_sel, protocol, epochs, batch_size, seed,
                 num_classes, verbose, redraw)
    clf.test_accuracy = clf.accuracy(x_test, y_test, keras.random.SeedGenerator(seed + 1))
    return clf


def load_or_train(spec: ModalitySpec, x_train: np.ndarray, y_train: np.ndarray,
                  x_test: np.ndarray, y_test: np.ndarray, dataset: str, protocol: str = "clean",
                  cache_dir: str = "", epochs: int = 10, batch_size: int = 256, seed: int = 0,
                  num_classes: int = 10, verbose: bool = False,
                  redraw: Any = None) -> tuple[DigitClassifier, bool]:
    """Cached classifier for this data and setting (`redraw`: see `train_classifier`), trained
    on a miss or a corrupt entry.

    The entry (weights + test accuracy) lives in `<cache>/classifiers/` as a checksummed
    `.npz` (`mmali_tf.data.cache.cached_arrays`). Returns (classifier, loaded_from_cache).
    """
    check_protocol(protocol)
    params = {"data": _fingerprint(x_train, y_train, x_test, y_test), "spec": spec.to_dict(),
              "arch": ARCH_VERSION, "protocol": protocol, "epochs": epochs,
              "batch_size": batch_size, "seed": seed, "num_classes": num_classes}
    if redraw is not None:
        params["redraw"] = dataclasses.asdict(redraw)
    trained: list[DigitClassifier] = []

    def build() -> dict[str, np.ndarray]:
        clf = train_classifier(spec, x_train, y_train, x_test, y_test, protocol, epochs,
                               batch_size, seed, num_classes, verbose, redraw)
        trained.append(clf)
        weights = clf.features.get_weights() + clf.head.get_weights()
        arrays = {f"w{i:03d}": w for i, w in enumerate(weights)}
        arrays["test_accuracy"] = np.float64(clf.test_accuracy)
        arrays["always_on_dropout"] = np.float64(clf.always_on_dropout)
        return arrays

    root = os.path.join(cache_root({"cache_dir": cache_dir}), "classifiers")
    arrays = cached_arrays(root, f"{dataset}-{spec.name}-{protocol}", params, build)
    if trained:
        return trained[0], False
    features, head, _ = build_networks(spec, num_classes)
    weights = [arrays[k] for k in sorted(arrays) if k.startswith("w")]
    n = len(features.get_weights())
    features.set_weights(weights[:n])
    head.set_weights(weights[n:])
    return DigitClassifier(spec.name, features, head, float(arrays["always_on_dropout"]),
                           float(arrays["test_accuracy"])), True
