"""The `mnist_label` dataset: MNIST images paired with their digit labels (MVAE's MNIST
experiment, Wu & Goodman 2018; mhw32/multimodal-vae-public mnist/).

Modalities: `image` 28x28x1 (the authors' Swish MLPs, `swish_mlp`; Bernoulli on the decoder's
logits, lambda 1) and `digit`, the label as a one-hot vector (10,) (`swish_embedding`;
categorical, lambda 10: the authors' `--lambda-text` default). Every image is paired with its
own label, so the pairing flags do not apply; `digit`'s ten instances are the one-hot vectors.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from mmali_tf.data import idx
from mmali_tf.data.pairing import full_pool
from mmali_tf.data.settings import MNISTLabelSettings
from mmali_tf.data.specs import ModalitySpec, PairedDataset, PairedSplit
from mmali_tf.registry import register_dataset

CLASSES = 10
IMAGE = ModalitySpec("image", (28, 28, 1), "image", "swish_mlp", likelihood="bernoulli_logits")
DIGIT = ModalitySpec("digit", (CLASSES,), "vector", "swish_embedding", likelihood="categorical",
                     likelihood_weight=10.0)


def labelled_split(images: np.ndarray, labels: np.ndarray) -> PairedSplit:
    """Pair image i with the one-hot vector of its label."""
    labels = np.asarray(labels).astype(np.int32)
    instances = {"image": images, "digit": np.eye(CLASSES, dtype=np.float32)}
    pairs = np.stack([np.arange(len(labels), dtype=np.int32), labels], axis=1)
    return PairedSplit(instances=instances,
                       labels={"image": labels, "digit": np.arange(CLASSES, dtype=np.int32)},
                       pairs=pairs, unpaired=full_pool(instances))


@register_dataset("mnist_label", settings=MNISTLabelSettings)
def load(config: Mapping[str, Any]) -> PairedDataset:
    """The `mnist_label` PairedDataset (modalities `image`, `digit`)."""
    mnist = idx.load_mnist(config)
    splits = {s: labelled_split(*mnist[s]) for s in ("train", "test")}
    return PairedDataset(name="mnist_label", specs=(IMAGE, DIGIT), train=splits["train"],
                         test=splits["test"], num_classes=CLASSES)
