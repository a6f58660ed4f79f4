"""Every command-line flag of mmali_tf, defined once, with help text and validators.

Entry points call one `define_*_flags()` function (training, evaluation, export, translation).
Shared flags are defined here; a flag that only one model or dataset reads may instead be
declared in its registration (`mmali_tf.registry`), and is defined by `define_declared_flags`.
The choices of `--model` and `--dataset` are the registries' names, read when a value is
parsed, so models and datasets of `--plugins` modules are accepted. This module imports absl
and the registry only (no TensorFlow), so the TensorFlow-free tools can use it too.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from absl import flags

from mmali_tf import registry

FLAGS = flags.FLAGS

STRATEGIES = ("default", "mirrored", "multi_worker")
#: network families of the PolyMNIST-style datasets (`--poly_network`)
POLY_NETWORKS = ("mnist_mlp", "polymnist_conv")


class FlagUsageError(ValueError):
    """A flag value a user got wrong; CLIs turn it into a one-line message and exit code 2."""


def _defined(name: str) -> bool:
    return name in FLAGS


_TRAIN_FLAG_NAMES: list[str] = []


def train_flag_names() -> tuple[str, ...]:
    """Names of the flags `define_train_flags()` defined, in definition order."""
    return tuple(_TRAIN_FLAG_NAMES)


def define_train_flags() -> None:
    """Flags of `python -m mmali_tf.train` (idempotent)."""
    if _defined("run_dir"):
        return
    before = set(FLAGS)
    _define_run_flags()
    _define_data_flags()
    _define_network_flags()
    _define_mmali_flags()
    _define_vae_flags()
    _define_cross_flag_validators()
    _TRAIN_FLAG_NAMES.extend(name for name in FLAGS if name not in before)
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


def _registry_help(kind: str, text: str) -> str:
    return f"<{'|'.join(registry.names(kind))}>: {text}"


_REGISTRY_FLAGS = {"model": ("model", "mmali", "Model to train (and models of --plugins)."),
                   "dataset": ("dataset", "digits", "Paired multimodal dataset (and datasets "
                               "of --plugins).")}


def _define_registry_enum(flag: str) -> None:
    kind, default, text = _REGISTRY_FLAGS[flag]
    flags.DEFINE(RegistryEnumParser(kind), flag, default, _registry_help(kind, text),
                 serializer=flags.ArgumentSerializer())


_DEFINE_BY_TYPE = {bool: flags.DEFINE_boolean, int: flags.DEFINE_integer,
                   float: flags.DEFINE_float, str: flags.DEFINE_string}
_declared: dict[str, tuple] = {}


def define_declared_flags() -> None:
    """Define the flags that registered models and datasets declare (idempotent); call again
    after loading plugins. Also refreshes the choices listed in --model/--dataset help."""
    if not _defined("run_dir"):
        return
    for flag, (kind, _, text) in _REGISTRY_FLAGS.items():
        FLAGS[flag].help = _registry_help(kind, text)
    for entry, spec in registry.declared_flags():
        name, default, help_text = spec[:3]
        extra = dict(spec[3]) if len(spec) == 4 else {}
        if name in _declared and _declared[name] != spec:
            raise registry.RegistryError(f"flag --{name} is declared twice with different "
                                         f"definitions (again by {entry.where})")
        if _defined(name):
            if name in _declared:
                continue
            raise registry.RegistryError(f"{entry.where} declares flag --{name}, which "
                                         "mmali_tf already defines")
        if "enum_values" in extra:
            flags.DEFINE_enum(name, default, list(extra.pop("enum_values")), help_text)
        elif isinstance(default, (list, tuple)):
            flags.DEFINE_list(name, list(default), help_text)
        elif type(default) in _DEFINE_BY_TYPE:
            _DEFINE_BY_TYPE[type(default)](name, default, help_text, **extra)
        else:
            raise registry.RegistryError(f"{entry.where}: flag --{name} has a default of "
                                         f"unsupported type {type(default).__name__}")
        _declared[name] = spec
        if name not in _TRAIN_FLAG_NAMES:
            _TRAIN_FLAG_NAMES.append(name)


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
    """FlagUsageError when a dataset flag the chosen dataset does not read is set.

    "Set" means different from the flag's default, so this works for parsed flags and for
    dict configs alike.
    """
    dataset = str(config.get("dataset", FLAGS["dataset"].default))
    try:
        reads = registry.dataset_reads(dataset)
    except ValueError as error:
        raise FlagUsageError(str(error)) from None
    for name in registry.dataset_flags():
        if name in reads or name not in config or not _defined(name):
            continue
        if config[name] != FLAGS[name].default:
            listed = " ".join(f"--{f}" for f in reads) or "none"
            raise FlagUsageError(f"--{name}={config[name]}: --dataset={dataset} does not read "
                                 f"it (dataset flags it reads: {listed})")


# ------------------------------------------------------------------------------------ run
def _define_run_flags() -> None:
    flags.DEFINE_string("run_dir", "runs/default", "Run directory: flags.txt, checkpoints/, "
                        "tensorboard/, samples/, model.keras, train_log.csv. Rerunning the same "
                        "command resumes from its last checkpoint.")
    _define_registry_enum("model")
    flags.DEFINE_multi_string("plugins", [], "Python module (importable from sys.path; repeat "
                              "the flag for several) whose mmali_tf.registry declarations add "
                              "models, datasets, network families or fusion methods. Recorded "
                              "in flags.txt and run.json, so evaluation and export load it "
                              "too.")
    flags.DEFINE_integer("max_steps", 2000, "Total training iterations (each one full "
                         "critic + generator update for mmALI).", lower_bound=1)
    flags.DEFINE_integer("batch_size", 64, "Global batch size of one draw (split over replicas).",
                         lower_bound=2)
    flags.DEFINE_integer("seed", 0, "Random seed of data order, initialisation and noise.",
                         lower_bound=0)
    flags.DEFINE_enum("strategy", "default", STRATEGIES, "tf.distribute strategy.")
    flags.DEFINE_integer("num_cpu_replicas", 0, "With --strategy=mirrored and no GPU, split the "
                         "CPU into this many logical devices (0: use the visible devices).",
                         lower_bound=0)
    flags.DEFINE_integer("checkpoint_every", 500, "Write a checkpoint every N steps.",
                         lower_bound=1)
    flags.DEFINE_integer("keep_checkpoints", 3, "How many checkpoints to keep.", lower_bound=1)
    flags.DEFINE_integer("log_every", 100, "Steps per Keras 'epoch': progress bar, CSV and "
                         "TensorBoard scalars are written at this cadence.", lower_bound=1)
    flags.DEFINE_integer("sample_every", 1000, "Write sample grids every N steps (0: never).",
                         lower_bound=0)
    flags.DEFINE_boolean("jit_compile", True, "Compile train_step with XLA.")
    flags.DEFINE_float("lr", 2e-4, "Learning rate of every optimizer (see --g_lr).",
                       lower_bound=0.0)
    flags.DEFINE_float("g_lr", None, "Learning rate of the encoder/decoder optimizer "
                       "(g_optimizer) when it should differ from --lr, e.g. a faster generator "
                       "than critic in mmALI; default: --lr.", lower_bound=0.0)
    flags.DEFINE_float("beta1", 0.5, "Adam beta_1.", lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_float("beta2", 0.999, "Adam beta_2.", lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_float("adam_epsilon", 1e-8, "Adam epsilon (PyTorch default 1e-8).",
                       lower_bound=0.0)
    flags.DEFINE_boolean("amsgrad", False, "Use the AMSGrad variant of Adam (MMVAE).")
    flags.DEFINE_float("ema_decay", 0.9999, "Decay of the EMA of encoder/decoder weights used "
                       "for sampling, evaluation and export (0: no EMA).",
                       lower_bound=0.0, upper_bound=0.999999)
    flags.DEFINE_integer("ema_start", 50000, "EMA is a hard copy of the weights until this "
                         "step, then decays.", lower_bound=0)


# ------------------------------------------------------------------------------------ data
def _define_data_flags() -> None:
    _define_registry_enum("dataset")
    flags.DEFINE_string("data_dir", "data", "Directory holding real dataset files (MNIST and "
                        "Fashion-MNIST IDX, SVHN .mat).")
    flags.DEFINE_string("cache_dir", "", "Cache of rendered/derived datasets (default: "
                        "$MMALI_CACHE or ~/.cache/mmali_tf).")
    flags.DEFINE_enum("poly_network", "mnist_mlp", POLY_NETWORKS, "polymnist, polydigits: "
                      "network family of the modalities: MLPs, or the MoPoE paper's PolyMNIST "
                      "convnets (decoders without output sigmoid, as the authors').")
    flags.DEFINE_boolean("use_tfds", False, "Read mnist / svhn_cropped from TensorFlow Datasets "
                         "(already prepared by the user; pip install -e \".[tfds]\") instead "
                         "of local files.")
    flags.DEFINE_integer("data_multiplication", 30, "dm: each instance is paired with dm random "
                         "same-class instances of the other modalities.", lower_bound=1)
    flags.DEFINE_integer("max_per_class", 10000, "max_d: at most this many instances per class "
                         "enter the pairing.", lower_bound=1)
    flags.DEFINE_float("percentage", 1.0, "Keep this fraction of each class before pairing "
                       "(the paper's 20%% setting is 0.2).", lower_bound=1e-6, upper_bound=1.0)
    flags.DEFINE_boolean("use_all", False, "Per-class count = percentage * class count instead "
                         "of min(counts, max_per_class) (reference --use_all).")
    flags.DEFINE_boolean("pair_all_instances", False, "Per-class count = the largest "
                         "modality's count instead of the smallest; the smaller modalities' "
                         "instances repeat, so every instance enters the pairs (our extension).")
    flags.DEFINE_integer("num_views", 2, "multimnist: number of rotated views (0, 90, 180, 270 "
                         "degrees).", lower_bound=2, upper_bound=4)
    flags.DEFINE_enum("base_set", "digits", ("mnist", "fashion", "digits"),
                      "multimnist: base image set of the rotated views.")
    flags.DEFINE_string("features_file", "", "features: .npz with arrays <modality>_train, "
                        "<modality>_test and label_train, label_test.")
    flags.DEFINE_integer("digits_print_per_class", 400, "digits: rendered `print` instances per "
                         "class (train + test).", lower_bound=20)
    flags.DEFINE_enum("digits_print_colours", "svhn", ("svhn", "uniform"), "digits: colour "
                      "scheme of `print`: 'svhn' (mostly desaturated, dark text on a lighter "
                      "plate in 70%% of the images) or 'uniform' (dataset version 1: uniform RGB "
                      "colours, both polarities equally likely).")
    flags.DEFINE_float("digits_distractor_prob", 0.6, "digits: probability that a neighbouring "
                       "digit shows at each side of a `print` crop.", lower_bound=0.0,
                       upper_bound=1.0)
    flags.DEFINE_list("augment", [], "Image modalities whose training instances get small "
                      "random affine maps (rotation, scale, shift; mmali_tf/data/augment.py).")
    flags.DEFINE_enum("unpaired", "shuffle", ("shuffle", "pool"), "Negatives of the joint critic "
                      "and unimodal critic terms: 'shuffle' reshuffles the paired batch (as "
                      "released), 'pool' draws from per-modality pools that include unpaired "
                      "examples (our extension).")


# ------------------------------------------------------------------------------------ networks
def _define_network_flags() -> None:
    flags.DEFINE_integer("latent_dim", 20, "Per-modality latent size d = style + content.",
                         lower_bound=1)
    flags.DEFINE_integer("style_dim", 10, "Private style size d_s (first d_s entries of z); "
                         "0 for models without a style subspace.", lower_bound=0)
    flags.DEFINE_enum("init", "normal", ("normal", "torch"), "Weight init: N(0, 0.02) with zero "
                      "bias (mmALI) or PyTorch's default kaiming-uniform (VAE baselines).")


# ------------------------------------------------------------------------------------ mmALI
def _define_mmali_flags() -> None:
    flags.DEFINE_float("lambda_unimodal", 1.0, "lambda_u: weight of the unimodal and cross "
                       "terms of the generator loss.", lower_bound=0.0)
    flags.DEFINE_float("lambda_x_rec", 0.0, "Weight of x reconstruction terms.", lower_bound=0.0)
    flags.DEFINE_float("lambda_s_rec", 0.0, "Weight of style re-encoding terms.", lower_bound=0.0)
    flags.DEFINE_float("lambda_c_rec", 0.0, "Weight of content re-encoding terms.",
                       lower_bound=0.0)
    flags.DEFINE_boolean("joint_rec", False, "Use the joint (geometric-mean) reconstruction "
                         "terms instead of the unimodal ones for x and c.")
    flags.DEFINE_boolean("deterministic", False, "Deterministic encoders (no posterior noise).")
    flags.DEFINE_integer("dis_iter", 1, "Critic updates per iteration.", lower_bound=1,
                         upper_bound=10)
    flags.DEFINE_integer("gen_iter", 1, "Generator updates per iteration.", lower_bound=1,
                         upper_bound=10)
    flags.DEFINE_boolean("spectral_norm", True, "Spectral normalisation in every critic layer.")


# ------------------------------------------------------------------------------------ VAEs
def _define_vae_flags() -> None:
    flags.DEFINE_float("beta", 1.0, "Weight of the KL / JS regulariser.", lower_bound=0.0)
    flags.DEFINE_integer("kl_anneal_steps", 0, "Linear KL warm-up length in steps (0: none).",
                         lower_bound=0)
    flags.DEFINE_float("jmvae_alpha", 0.1, "JMVAE-kl: weight of KL(q(z|X) || q(z|x_m)).",
                       lower_bound=0.0)
    flags.DEFINE_integer("num_importance_samples", 30, "K: importance samples per encoder.",
                         lower_bound=1)
    flags.DEFINE_enum("objective", "dreg", ("dreg", "iwae", "elbo"), "MMVAE objective / "
                      "gradient estimator.")
    flags.DEFINE_enum("dreg_estimator", "released", ("released", "paper"), "MMVAE, MMVAE+ "
                      "--objective=dreg encoder gradients: 'released' as the authors' code "
                      "computes them (iffsid/mmvae: weighted by w~, its gradient hook never "
                      "fires; epalu/mmvaeplus: q with live parameters, i.e. the IWAE "
                      "gradient), 'paper' by w~^2 with stop-gradient q (DReG, Tucker et al. "
                      "2019).")
    flags.DEFINE_enum("posterior", "laplace", ("laplace", "normal"), "MMVAE posterior and "
                      "prior family.")
    flags.DEFINE_boolean("learn_prior", True, "MMVAE: learn the prior's scales.")
    flags.DEFINE_float("gamma", 2.0, "Contrastive models: weight of the positive term; use "
                       "gamma > 1 (values <= 1 are accepted with a warning: the paper reports "
                       "collapse at gamma = 1).", lower_bound=0.0)
    flags.DEFINE_integer("num_negatives", 5, "Contrastive models: in-batch negatives N.",
                         lower_bound=1)
    flags.DEFINE_float("beta_style", 1.0, "mmJSD-MS: weight of the style KL terms.",
                       lower_bound=0.0)
    flags.DEFINE_float("beta_content", 1.0, "mmJSD, mmJSD-MS: weight of the (content) JS term; "
                       "MoPoE: of the subset KLs.",
                       lower_bound=0.0)
    flags.DEFINE_boolean("stratified", False, "mmJSD: decode z from every expert for every "
                         "datapoint instead of mixture component selection.")


# ------------------------------------------------------------------------------------ rules
def _define_cross_flag_validators() -> None:
    flags.register_multi_flags_validator(
        ["style_dim", "latent_dim"], lambda f: f["style_dim"] < f["latent_dim"],
        message="--style_dim must be smaller than --latent_dim (the content part needs >= 1 "
                "dimension)")
    flags.register_multi_flags_validator(
        ["ema_start", "ema_decay"], lambda f: f["ema_decay"] == 0.0 or f["ema_decay"] > 0.5,
        message="--ema_decay must be 0 (off) or in (0.5, 1)")
    flags.register_multi_flags_validator(
        ["deterministic", "joint_rec"], lambda f: not (f["deterministic"] and f["joint_rec"]),
        message="--joint_rec needs stochastic encoders; it cannot be used with --deterministic")
    flags.register_multi_flags_validator(
        ["dataset", "features_file"],
        lambda f: f["dataset"] != "features" or bool(f["features_file"]),
        message="--dataset=features needs --features_file=<path to .npz>")
    flags.register_multi_flags_validator(
        ["strategy", "num_cpu_replicas"],
        lambda f: f["num_cpu_replicas"] == 0 or f["strategy"] == "mirrored",
        message="--num_cpu_replicas needs --strategy=mirrored")


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
    flags.DEFINE_integer("iwae_samples", 100, "K: importance samples per item of the test "
                         "log-likelihoods of likelihood-based models (papers: 1000).",
                         lower_bound=1)
    flags.DEFINE_integer("ll_items", 500, "Seeded test pairs scored by the log-likelihoods "
                         "(0: skip log-likelihoods).", lower_bound=0)
    flags.DEFINE_integer("cca_dim", 40, "k: CCA dimensions of the correlation score of vector "
                         "modalities.", lower_bound=1)


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


def define_translate_flags() -> None:
    """Flags of `tools/translate.py` (idempotent; TensorFlow-free like this module)."""
    if _defined("bundle"):
        return
    flags.DEFINE_string("bundle", None, "Bundle directory written by tools/export_onnx.py.")
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
