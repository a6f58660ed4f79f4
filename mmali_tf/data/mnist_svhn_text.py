"""`mnist_svhn_text`: mmJSD's trimodal MNIST-SVHN-Text (thomassutter/mmjsd,
datasets/SVHNMNISTDataset.py) from the user's MNIST IDX and SVHN .mat files (or TFDS).

`mnist` and `svhn` are read and paired by class as in `mnist_svhn`; `text` is the digit's
English word at a random start in 8 characters over the authors' 71-character alphabet
(`data/text.py`), one stored drawing per MNIST instance for evaluation and a fresh drawing for
every training example, as their `__getitem__` draws one per read. The authors pair with
data multiplication 20 (`--data_multiplication=20`; ours defaults to Shi et al.'s 30).
"""

from __future__ import annotations

from typing import Any, Mapping

from mmali_tf.data import idx, svhn
from mmali_tf.data.settings import MNISTSVHNTextSettings
from mmali_tf.data.specs import PairedDataset
from mmali_tf.data.text import text_dataset
from mmali_tf.registry import register_dataset


@register_dataset("mnist_svhn_text", settings=MNISTSVHNTextSettings,
                  shape_flags=("text_likelihood",))
def load(config: Mapping[str, Any]) -> PairedDataset:
    """The `mnist_svhn_text` PairedDataset (modalities `mnist`, `svhn`, `text`)."""
    mnist, street = idx.load_mnist(config), svhn.load_svhn(config)
    arrays = {s: {"mnist": mnist[s], "svhn": street[s]} for s in ("train", "test")}
    settings = MNISTSVHNTextSettings.from_config(config)
    return text_dataset("mnist_svhn_text", (svhn.MNIST, svhn.SVHN), arrays, config,
                        settings.seed, likelihood=settings.text_likelihood)
