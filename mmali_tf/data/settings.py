"""Settings of the datasets (`mmali_tf.config`): one class per dataset, named in its
registration (`@register_dataset("digits", settings=DigitsSettings)`).

A dataset's fields besides `DataSettings`' are the dataset flags it reads; any other dataset
flag set on the command line is refused (`flags.check_dataset_flags`). Settings several
datasets read are mixins with one definition. Imports neither TensorFlow nor absl.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from mmali_tf.config import DataSettings, Rule, Settings, setting
from mmali_tf.data.specs import CATEGORICAL

#: network families of the PolyMNIST-style datasets (`--poly_network`).
POLY_NETWORKS = ("mnist_mlp", "polymnist_conv", "mmvaeplus_resnet")
#: base image sets of `multimnist` (`--base_set`).
BASE_SETS = ("mnist", "fashion", "digits")


@dataclasses.dataclass(frozen=True)
class PairingSettings(DataSettings):
    """The by-class pairing rule (`pairing.PairingRule`) of datasets that pair instances."""

    data_multiplication: int = setting(30, "dm: each instance is paired with dm random "
                                       "same-class instances of the other modalities.",
                                       lower_bound=1)
    max_per_class: int = setting(10000, "max_d: at most this many instances per class enter "
                                 "the pairing.", lower_bound=1)
    percentage: float = setting(1.0, "Keep this fraction of each class before pairing (the "
                                "paper's 20%% setting is 0.2).", lower_bound=1e-6,
                                upper_bound=1.0)
    use_all: bool = setting(False, "Per-class count = percentage * class count instead of "
                            "min(counts, max_per_class) (reference --use_all).")
    pair_all_instances: bool = setting(False, "Per-class count = the largest modality's count "
                                       "instead of the smallest; the smaller modalities' "
                                       "instances repeat, so every instance enters the pairs "
                                       "(our extension).")


@dataclasses.dataclass(frozen=True)
class DataDirSettings(Settings):
    """Where real dataset files are read."""

    data_dir: str = setting("data", "Directory holding real dataset files (MNIST and "
                            "Fashion-MNIST IDX, SVHN .mat).")


@dataclasses.dataclass(frozen=True)
class TfdsSettings(Settings):
    """Read MNIST / SVHN from TensorFlow Datasets instead of files."""

    use_tfds: bool = setting(False, "Read mnist / svhn_cropped from TensorFlow Datasets "
                             "(already prepared by the user; pip install -e \".[tfds]\") "
                             "instead of local files.")


@dataclasses.dataclass(frozen=True)
class PrintCountSettings(Settings):
    """How many `print` digits are rendered (`data/digits.py`)."""

    digits_print_per_class: int = setting(400, "digits: rendered `print` instances per class "
                                          "(train + test).", lower_bound=20)


@dataclasses.dataclass(frozen=True)
class ViewsSettings(Settings):
    """Number of rotated views (`data/rotated.py`)."""

    num_views: int = setting(2, "multimnist: number of rotated views (0, 90, 180, 270 "
                             "degrees).", lower_bound=2, upper_bound=4)


@dataclasses.dataclass(frozen=True)
class PolyNetworkSettings(Settings):
    """Network family of the PolyMNIST-style datasets."""

    poly_network: str = setting("mnist_mlp", "polymnist, polydigits: network family of the "
                                "modalities: MLPs, the MoPoE paper's PolyMNIST convnets or "
                                "the MMVAE+ paper's ResNets (both with decoders without "
                                "output sigmoid, as the authors').",
                                choices=POLY_NETWORKS)


@dataclasses.dataclass(frozen=True)
class DigitsSettings(PairingSettings, PrintCountSettings):
    """`digits` (`data/digits.py`)."""

    digits_print_colours: str = setting(
        "svhn", "digits: colour scheme of `print`: 'svhn' (mostly desaturated, dark text on a "
        "lighter plate in 70%% of the images) or 'uniform' (dataset version 1: uniform RGB "
        "colours, both polarities equally likely).", choices=("svhn", "uniform"))
    digits_distractor_prob: float = setting(0.6, "digits: probability that a neighbouring "
                                            "digit shows at each side of a `print` crop.",
                                            lower_bound=0.0, upper_bound=1.0)


@dataclasses.dataclass(frozen=True)
class TextSettings(Settings):
    """The likelihood of the trimodal datasets' `text` modality (`data/text.py`)."""

    text_likelihood: str = setting(
        "categorical", "digits_text, mnist_svhn_text: likelihood of `text`: 'categorical' "
        "(a softmax over the alphabet per position) or 'categorical_logratio' (what mmJSD's "
        "released code computes: its OneHotCategorical takes the decoder's log-softmax as "
        "probabilities, p = log_softmax / sum(log_softmax)).", choices=CATEGORICAL)


@dataclasses.dataclass(frozen=True)
class DigitsTextSettings(DigitsSettings, TextSettings):
    """`digits_text` (`data/digits_text.py`): the `digits` images plus text."""


@dataclasses.dataclass(frozen=True)
class MNISTSVHNSettings(PairingSettings, DataDirSettings, TfdsSettings):
    """`mnist_svhn` (`data/svhn.py`)."""


@dataclasses.dataclass(frozen=True)
class MNISTSVHNTextSettings(MNISTSVHNSettings, TextSettings):
    """`mnist_svhn_text` (`data/mnist_svhn_text.py`): MNIST-SVHN plus text."""


@dataclasses.dataclass(frozen=True)
class MNISTLabelSettings(DataSettings, DataDirSettings, TfdsSettings):
    """`mnist_label` (`data/mnist_label.py`; its own pairs: no pairing flags)."""


@dataclasses.dataclass(frozen=True)
class MultiMNISTSettings(PairingSettings, ViewsSettings, DataDirSettings, TfdsSettings,
                         PrintCountSettings):
    """`multimnist` (`data/rotated.py`)."""

    base_set: str = setting("digits", "multimnist: base image set of the rotated views.",
                            choices=BASE_SETS)


@dataclasses.dataclass(frozen=True)
class FashionRotatedSettings(PairingSettings, ViewsSettings, DataDirSettings):
    """`fashion_rotated` (`data/rotated.py`)."""


@dataclasses.dataclass(frozen=True)
class FashionPairSettings(PairingSettings, DataDirSettings):
    """`fashion_pair` (`data/fashion_pair.py`)."""


@dataclasses.dataclass(frozen=True)
class FeaturesSettings(DataSettings):
    """`features` (`data/features.py`; its own pairs: no pairing flags)."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(("dataset", "features_file"),
             lambda f: f["dataset"] != "features" or bool(f["features_file"]),
             "--dataset=features needs --features_file=<path to .npz>"),)

    features_file: str = setting("", "features: .npz with arrays <modality>_train, "
                                 "<modality>_test and label_train, label_test.")


@dataclasses.dataclass(frozen=True)
class PolydigitsSettings(PairingSettings, PolyNetworkSettings):
    """`polydigits` (`data/polydigits.py`)."""


@dataclasses.dataclass(frozen=True)
class PolymnistSettings(DataSettings, DataDirSettings, PolyNetworkSettings):
    """`polymnist` (`data/polymnist.py`; the published tuples: no pairing flags)."""
