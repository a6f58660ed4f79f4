"""Every command-line flag of mmali_tf, with help text and validators.

Entry points call one `define_*_flags()` function (training, evaluation, export, translation).
The training flags are generated from the typed settings (`mmali_tf.config`): the driver's
`RunSettings` and `DataSettings`, and the settings class each registered model and dataset
names in its registration (plugins included, `define_declared_flags`). A field's default,
help, bounds and choices become its flag's; a class's `RULES` become multi-flag validators.
The choices of `--model` and `--dataset` are the registries' names, read when a value is
parsed. This module imports absl and the registry only (no TensorFlow), so the
TensorFlow-free tools can use it too.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from absl import flags

from mmali_tf import config as config_lib
from mmali_tf import registry
from mmali_tf.flags_text import flag_value_text

FLAGS = flags.FLAGS


class FlagUsageError(ValueError):
    """A flag value a user got wrong; CLIs turn it into a one-line message and exit code 2."""


def _defined(name: str) -> bool:
    return name in FLAGS


_TRAIN_FLAG_NAMES: list[str] = []


def train_flag_names() -> tuple[str, ...]:
    """Names of the flags `define_train_flags()` defined, in definition order."""
    return tuple(_TRAIN_FLAG_NAMES)


def define_train_flags() -> None:
    """Flags of `python -m mmali_tf.train` (idempotent): every settings field of the driver
    and of the registered models and datasets."""
    if _defined("run_dir"):
        return
    for cls in config_lib.DRIVER_SETTINGS:
        _define_settings(cls, f"{cls.__module__}.{cls.__qualname__}")
    define_declared_flags()


class RegistryEnumParser(flags.EnumParser):
    """Enum parser whose choices are the live names of a registry kind (plugins included)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(registry.names(kind))

    @property
    def enum_values(self) -> list[str]:
        return list(registry.names(self.kind))

    @enum_values.setter
    def enum_values(self, value: Sequence[str]) -> None:
        """The choices always come from the registry."""


class SwitchParser(flags.BooleanParser):
    """Parser of a `config.Switch`: a boolean, or `auto`."""

    def parse(self, argument: Any) -> bool | str:
        if isinstance(argument, str) and argument.strip().lower() == config_lib.AUTO:
            return config_lib.AUTO
        try:
            return super().parse(argument)
        except (TypeError, ValueError):
            raise ValueError(f"{argument!r} is not true, false or {config_lib.AUTO}") from None

    def flag_type(self) -> str:
        return f"bool|{config_lib.AUTO}"


class SwitchSerializer(flags.ArgumentSerializer):
    def serialize(self, value: Any) -> str:
        return flag_value_text(value)


class SwitchFlag(flags.Flag):
    """A boolean flag that also takes `auto`: --name, --noname, --name=true|false|auto."""

    def __init__(self, name: str, default: Any, help: str) -> None:
        super().__init__(SwitchParser(), SwitchSerializer(), name, default, help, boolean=True)

    def _serialize(self, value: Any) -> str:
        return "" if value is None else f"--{self.name}={self.serializer.serialize(value)}"


def _registry_help(kind: str, text: str) -> str:
    return f"<{'|'.join(registry.names(kind))}>: {text}"


_DEFINE_BY_TYPE = {bool: flags.DEFINE_boolean, int: flags.DEFINE_integer,
                   float: flags.DEFINE_float, str: flags.DEFINE_string}
#: flag name -> the settings field it was defined from.
_declared: dict[str, config_lib.Field] = {}
_rules: list[config_lib.Rule] = []


def _define_field(field: config_lib.Field) -> None:
    meta, name, default = field.meta, field.name, field.default
    if field.switch:
        flags.DEFINE_flag(SwitchFlag(name, default, meta.help))
    elif meta.registry:
        flags.DEFINE(RegistryEnumParser(meta.registry), name, default,
                     _registry_help(meta.registry, meta.help),
                     serializer=flags.ArgumentSerializer())
    elif meta.multi:
        flags.DEFINE_multi_string(name, list(default), meta.help)
    elif meta.choices:
        flags.DEFINE_enum(name, default, list(meta.choices), meta.help)
    elif field.type is tuple:
        flags.DEFINE_list(name, list(default), meta.help)
    else:
        bounds = {k: v for k, v in (("lower_bound", meta.lower_bound),
                                    ("upper_bound", meta.upper_bound)) if v is not None}
        _DEFINE_BY_TYPE[field.type](name, default, meta.help, **bounds)


def _define_settings(cls: type[config_lib.Settings], where: str) -> None:
    """Define the flag of every field of `cls` not defined yet, then its rules."""
    for field in cls.fields():
        old = _declared.get(field.name)
        if old is not None and old.signature != field.signature:
            raise registry.RegistryError(f"flag --{field.name} is declared twice with "
                                         f"different definitions (again by {where})")
        if _defined(field.name):
            if old is not None:
                continue
            raise registry.RegistryError(f"{where} declares flag --{field.name}, which "
                                         "mmali_tf already defines")
        _define_field(field)
        _declared[field.name] = field
        if field.name not in _TRAIN_FLAG_NAMES:
            _TRAIN_FLAG_NAMES.append(field.name)
    for rule in cls.rules():
        if rule not in _rules:
            flags.register_multi_flags_validator(list(rule.names), rule.check,
                                                 message=rule.message)
            _rules.append(rule)


def define_declared_flags() -> None:
    """Define the flags of the settings of every registered model and dataset (idempotent);
    call again after loading plugins. Also refreshes the choices listed in --model/--dataset
    help."""
    if not _defined("run_dir"):
        return
    for name, field in _declared.items():
        if field.meta.registry:
            FLAGS[name].help = _registry_help(field.meta.registry, field.meta.help)
    for entry, cls in registry.settings_classes():
        _define_settings(cls, entry.where)


def plugins_in_argv(argv: Sequence[str]) -> list[str]:
    """The `--plugins` values of argv, flagfiles expanded (before parsing)."""
    try:
        args = FLAGS.read_flags_from_files(list(argv[1:]), force_gnu=False)
    except flags.Error:
        args = list(argv[1:])  # the real parse reports the bad flagfile
    found = []
    for i, arg in enumerate(args):
        bare = arg.lstrip("-")
        if arg.startswith("-") and bare.startswith("plugins="):
            found.append(bare.split("=", 1)[1])
        elif arg.startswith("-") and bare == "plugins" and i + 1 < len(args):
            found.append(args[i + 1])
    return found


def load_plugins(modules: Sequence[str]) -> None:
    """Read plugin declarations and define their flags (FlagUsageError on a bad plugin)."""
    try:
        registry.load_plugins(modules)
        define_declared_flags()
    except registry.RegistryError as error:
        raise FlagUsageError(str(error)) from None


def check_dataset_flags(config: Mapping[str, Any]) -> None:
    """FlagUsageError when a dataset flag the chosen dataset does not read is set
    (`mmali_tf.data.check_dataset_flags`)."""
    from mmali_tf import data

    try:
        data.check_dataset_flags(config)
    except ValueError as error:
        raise FlagUsageError(str(error)) from None


# ------------------------------------------------------------------------------------ evaluation
def define_eval_flags() -> None:
    """Flags of `python -m mmali_tf.evaluate` (idempotent).

    Also defines the training flags, whose `--run_dir`, `--seed` and `--cache_dir` evaluation
    shares (so either entry point can be set up first in one process).
    """
    define_train_flags()
    if _defined("protocol"):
        return
    flags.DEFINE_enum("protocol", "clean", ("clean", "reference"), "Evaluation protocol: "
                      "'clean' selects probe and classifier epochs on a validation split of "
                      "train with deterministic classifiers (probe 30 epochs, classifiers 10 "
                      "at batch 64); 'reference' does what the released mmALI scripts do "
                      "(probe 100 epochs, classifiers 100 epochs at batch 256, best test "
                      "epoch, MNIST classifier dropout always on). Results go to "
                      "run_dir/eval/<protocol>[_<probe>]/.")
    flags.DEFINE_integer("num_samples", 10000, "Prior samples for joint coherence, and at most "
                         "this many seeded pairs of the split for cross/synergy coherence, "
                         "the joint latent probe and CCA.", lower_bound=1)
    flags.DEFINE_enum("split", "test", ("test", "train"), "Split evaluated.")
    flags.DEFINE_enum("weights", "ema", ("ema", "raw"), "Evaluate the EMA networks (falls back to "
                      "raw when the run has no EMA) or the raw ones.")
    flags.DEFINE_integer("eval_step", None, "Checkpoint step to evaluate (default: latest).",
                         lower_bound=0)
    flags.DEFINE_integer("curve_every", 0, "Step curve instead of one evaluation: joint, "
                         "cross and self coherence of every checkpoint whose step is a multiple "
                         "of N (train with --keep_checkpoint_every=N), written to run_dir/eval/"
                         "<protocol>[_<probe>]/curve.json (mmali_tf/curve.py; 0: off).",
                         lower_bound=0)
    flags.DEFINE_string("checkpoint_dir", "", "With --curve_every: a directory of this run's "
                        "ckpt-<step>.* files to read instead of run_dir/checkpoints/ (copies "
                        "kept aside).")
    flags.DEFINE_integer("eval_batch_size", 256, "Batch size of evaluation passes.",
                         lower_bound=1)
    flags.DEFINE_integer("probe_epochs", None, "Epochs of each latent linear probe (default: "
                         "the protocol's, 30 clean / 100 reference).", lower_bound=1)
    flags.DEFINE_enum("latent_probe", "shi", ("shi", "sutter"), "Latent linear probe: 'shi' "
                      "(Shi et al.'s SGD softmax probe on sampled codes of every training "
                      "instance; mmALI's script runs it 100 epochs, best test epoch) or "
                      "'sutter' (Sutter et al., mmJSD: logistic regression on the posterior "
                      "means of 256 training codes).")
    flags.DEFINE_integer("classifier_epochs", None, "Epochs of each coherence classifier "
                         "(trained once per dataset and cached; default: the protocol's, 10 "
                         "clean / 100 reference).", lower_bound=1)
    flags.DEFINE_float("classifier_threshold", 0.95, "Coherence is marked unreliable when a "
                       "classifier's test accuracy is below this.", lower_bound=0.0,
                       upper_bound=1.0)
    flags.DEFINE_enum("text_scorer", "classifier", ("classifier", "nearest_word"),
                      "How coherence scores a generated text modality: 'classifier' (mmJSD's "
                      "1-D convnet on the decoder's probabilities, trained on texts redrawn "
                      "with the dataset's rule and cached like the image classifiers) or "
                      "'nearest_word' (the class word nearest to the argmax string in edit "
                      "distance; how text was scored before the classifier).")
    flags.DEFINE_integer("iwae_samples", 100, "K: importance samples per item of the test "
                         "log-likelihoods of likelihood-based models (papers: 1000).",
                         lower_bound=1)
    flags.DEFINE_integer("ll_items", 500, "Seeded test pairs scored by the log-likelihoods "
                         "(0: skip log-likelihoods).", lower_bound=0)
    flags.DEFINE_integer("cca_dim", 40, "k: CCA dimensions of the correlation score of vector "
                         "modalities.", lower_bound=1)
    flags.DEFINE_integer("fid_samples", 10000, "Sample quality (FID and PRD precision/recall "
                         "of generated vs real images, on the coherence classifiers' "
                         "penultimate features): at most this many real test images per image "
                         "modality and generated images per set (0: skip sample quality).",
                         lower_bound=0)


def define_compare_flags() -> None:
    """Flags of `tools/compare_runs.py` (idempotent)."""
    if _defined("compare_out"):
        return
    flags.DEFINE_string("compare_out", "compare", "Output prefix: writes <prefix>.md and "
                        "<prefix>.png.")
    flags.DEFINE_string("eval", "clean", "Evaluation read from each run directory: "
                        "eval/<this>/metrics.json (clean, reference, clean_sutter, ...).")


# ------------------------------------------------------------------------------------ export
# tools/export_onnx.py shares --run_dir and --weights with evaluation, so it defines those flags
# too (like evaluation defines the training flags). tools/translate.py defines --seed itself with
# allow_override=True, so defining the training flags later in the same process replaces it.
def define_export_flags() -> None:
    """Flags of `tools/export_onnx.py` (idempotent); also defines the evaluation flags."""
    define_eval_flags()
    if _defined("out"):
        return
    flags.DEFINE_string("out", None, "Bundle directory to write (manifest.json + ONNX graphs); "
                        "written atomically.")
    flags.DEFINE_integer("opset", 17, "ONNX opset of the exported graphs.", lower_bound=14,
                         upper_bound=18)
    flags.DEFINE_integer("step", None, "Checkpoint step to export (default: latest).",
                         lower_bound=0)
    flags.DEFINE_boolean("overwrite", False, "Replace an existing --out bundle (only once the "
                         "new one is complete).")
    flags.DEFINE_list("graphs", None, "Export only these graphs (e.g. translate_hand_to_print,"
                      "encoder_hand); default: all.")
    flags.DEFINE_enum("quantize", "none", ["none", "static_int8"], "static_int8: write an int8 "
                      "bundle (onnxruntime static QDQ quantization of Conv/MatMul, calibrated "
                      "on --calibration_examples training examples) with its fidelity against "
                      "the float bundle (max output error, coherence) in the manifest.")
    flags.DEFINE_integer("calibration_examples", 256, "With --quantize: training examples per "
                         "modality used to calibrate activation ranges.", lower_bound=1)


def define_translate_flags() -> None:
    """Flags of `tools/translate.py` (idempotent; TensorFlow-free like this module)."""
    if _defined("bundle"):
        return
    flags.DEFINE_string("bundle", None, "Bundle directory written by tools/export_onnx.py "
                        "(default: the trained digits mmALI bundle shipped with the package, "
                        "modalities hand and print, loaded pinned to its digest).")
    flags.DEFINE_string("bundle_digest", None, "Refuse the bundle unless the sha256 of its "
                        "manifest.json is this (printed by the export, also in <bundle>.sha256); "
                        "pin every bundle you did not build yourself.")
    flags.DEFINE_string("from", None, "Source modality (e.g. hand).")
    flags.DEFINE_string("to", None, "Target modality (e.g. print).")
    flags.DEFINE_string("input", None, "Source data: .npy (one example or a batch, float in the "
                        "modality's range or uint8 0..255) or an image file (.png/.jpg/.bmp), "
                        "resized and converted to the source modality.")
    flags.DEFINE_string("input_text", None, "Source text of a text modality instead of "
                        "--input (e.g. seven); a .txt --input holds one text per line.")
    flags.DEFINE_string("output", None, "Result: .npy (the batch), .png (an image grid) or, for "
                        "a text target, .txt (one generated text per line, also printed).")
    if not _defined("seed"):
        flags.DEFINE_integer("seed", 0, "Seed of the posterior and style noise.", lower_bound=0,
                             allow_override=True)
    flags.DEFINE_boolean("use_mean", False, "Decode the source posterior mean instead of a "
                         "sample (the target style is still drawn from the prior).")
    flags.DEFINE_enum("mode", "latency", ["latency", "throughput"], "onnxruntime setting: "
                      "latency (one session call) or throughput (large batches: split across "
                      "--threads workers).")
    flags.DEFINE_integer("threads", None, "latency: intra-op threads (default 1); throughput: "
                         "workers (default: the physical cores).", lower_bound=1)
