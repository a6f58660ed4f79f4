"""The trimodal embedded dataset `digits_text`: `hand`, `print` and `text`.

`hand` and `print` are the `digits` instances with their fixed train/test split; `text` is
the digit's English word at a random start in 8 characters (mmJSD's MNIST-SVHN-Text rule,
`data/text.py`), one stored drawing per `hand` instance and a fresh drawing for every training
example. All three are paired many-to-many by class like `digits`.
"""

from __future__ import annotations

from typing import Any, Mapping

from mmali_tf.data import digits
from mmali_tf.data.settings import DigitsTextSettings
from mmali_tf.data.specs import PairedDataset
from mmali_tf.data.text import text_dataset
from mmali_tf.registry import register_dataset


@register_dataset("digits_text", settings=DigitsTextSettings, shape_flags=("text_likelihood",))
def load(config: Mapping[str, Any]) -> PairedDataset:
    """The `digits_text` PairedDataset (modalities `hand`, `print`, `text`)."""
    settings = DigitsTextSettings.from_config(config)
    return text_dataset("digits_text", (digits.HAND, digits.PRINT), digits.splits(config),
                        config, settings.seed, likelihood=settings.text_likelihood)
