"""Typed settings: every training setting is a field of a frozen dataclass, with one default.

Each model and dataset declares the settings it reads as a `Settings` subclass beside its code
and names it in its registration (`@register_model("mvae", settings=MVAESettings)`); the
shared settings of the training driver are `RunSettings` and `DataSettings` below. Everything
else derives from these classes: the absl flags with their help, bounds, choices and
cross-field rules (`mmali_tf.flags`), `train.make_config` and `run.json` (a flat dict of every
field), and what a model or dataset reads (`MVAESettings.from_config(config)`: fields, never
a dict lookup with its own default).

A field is declared with `setting(default, help, ...)`; its type is its annotation (`bool`,
`int`, `float`, `str`, `float | None`, `tuple[str, ...]` for a list flag, or `Switch`: a bool
that may also be `AUTO`, which the code that reads it resolves, e.g. `--jit_compile=auto`).
A flag shared by several classes is one field of one class that they all inherit (a mixin), so
it has one definition (`mmali_tf.flags` refuses two different definitions of one name).
Settings classes of the package live in modules that import neither TensorFlow nor absl, so
flags are defined and checked before TensorFlow loads.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any, Callable, ClassVar, Literal, Mapping, TypeVar, Union

#: metadata key of a field's `Meta`.
META = "mmali_setting"
#: strategies of `--strategy` (the driver builds them: `mmali_tf.distribute`).
STRATEGIES = ("default", "mirrored", "multi_worker")

#: the value of a `Switch` setting that leaves on/off to the code that reads it.
AUTO = "auto"
#: a bool setting that also takes `AUTO` (flag: --name, --noname, --name=true|false|auto).
Switch = Union[bool, Literal["auto"]]

S = TypeVar("S", bound="Settings")


@dataclasses.dataclass(frozen=True)
class Meta:
    """What a field declares besides its default: help and the rules of its values.

    `registry`: the choices are the names of this registry kind (plugins included);
    `multi`: a repeatable flag (`--plugins=a --plugins=b`).
    """

    help: str
    lower_bound: float | None = None
    upper_bound: float | None = None
    choices: tuple[str, ...] | None = None
    registry: str = ""
    multi: bool = False


def setting(default: Any, help: str, *, lower_bound: float | None = None,
            upper_bound: float | None = None, choices: tuple[str, ...] | None = None,
            registry: str = "", multi: bool = False) -> Any:
    """A settings field: its one default, help text and value rules."""
    meta = Meta(help, lower_bound, upper_bound, tuple(choices) if choices else None, registry,
                multi)
    return dataclasses.field(default=default, metadata={META: meta})


@dataclasses.dataclass(frozen=True)
class Rule:
    """A rule across fields: `check(values)` must hold, else `message` (one line)."""

    names: tuple[str, ...]
    check: Callable[[Mapping[str, Any]], bool]
    message: str


@dataclasses.dataclass(frozen=True)
class Field:
    """One resolved settings field: name, value type, default and `Meta`; `switch`: a `Switch`
    (type bool, values also `AUTO`)."""

    name: str
    type: type
    default: Any
    meta: Meta
    optional: bool = False
    switch: bool = False

    @property
    def signature(self) -> tuple:
        """What must agree when two classes declare a field of the same name."""
        return (self.type, self.default, self.meta, self.optional, self.switch)


def _resolve_type(hint: Any) -> tuple[type, bool]:
    if hint == Switch:
        return bool, False
    args = typing.get_args(hint)
    if type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return _resolve_type(inner)[0], True
    if typing.get_origin(hint) is tuple:
        return tuple, False
    if hint not in (bool, int, float, str):
        raise TypeError(f"settings fields are bool, int, float, str, X | None, "
                        f"tuple[str, ...] or Switch; got {hint!r}")
    return hint, False


@dataclasses.dataclass(frozen=True)
class Settings:
    """Base of every settings class (frozen: settings never change after construction)."""

    #: rules across fields, checked by the flag parser (`flags.register_multi_flags_validator`).
    RULES: ClassVar[tuple[Rule, ...]] = ()

    @classmethod
    @functools.cache
    def fields(cls) -> tuple[Field, ...]:
        """The resolved fields, base classes' first."""
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):
            kind, optional = _resolve_type(hints[f.name])
            out.append(Field(f.name, kind, f.default, f.metadata[META], optional,
                             switch=hints[f.name] == Switch))
        return tuple(out)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def rules(cls) -> tuple[Rule, ...]:
        """Every rule of this class and its bases (each once)."""
        out: list[Rule] = []
        for klass in reversed(cls.__mro__):
            out += [r for r in vars(klass).get("RULES", ()) if r not in out]
        return tuple(out)

    @classmethod
    def from_config(cls: type[S], config: Mapping[str, Any]) -> S:
        """The settings in a flat config (flag values, `run.json`): missing keys take the
        field's default, keys of other settings are ignored, values get the field's type."""
        values = {f.name: coerce(f, config[f.name]) for f in cls.fields() if f.name in config}
        return cls(**values)


def coerce(field: Field, value: Any) -> Any:
    """`value` as the field's type (a JSON or flag value: tuples for lists; None if optional)."""
    if value is None and (field.optional or field.default is None):
        return None
    if field.type is tuple:
        return tuple(str(v) for v in ([value] if isinstance(value, str) else value))
    if field.switch and isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    if field.type is bool and isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return field.type(value)


# ----------------------------------------------------------------------------- shared settings
@dataclasses.dataclass(frozen=True)
class SeedSettings(Settings):
    """The seed (data order, initialisation, noise), read by the driver, models and datasets."""

    seed: int = setting(0, "Random seed of data order, initialisation and noise.",
                        lower_bound=0)


@dataclasses.dataclass(frozen=True)
class RunSettings(SeedSettings):
    """Settings of the training driver (`mmali_tf.train`)."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(("strategy", "num_cpu_replicas"),
             lambda f: f["num_cpu_replicas"] == 0 or f["strategy"] == "mirrored",
             "--num_cpu_replicas needs --strategy=mirrored"),
        Rule(("keep_checkpoint_every", "checkpoint_every"),
             lambda f: f["keep_checkpoint_every"] % f["checkpoint_every"] == 0,
             "--keep_checkpoint_every must be a multiple of --checkpoint_every (checkpoints "
             "are only written at those steps)"),)

    run_dir: str = setting("runs/default", "Run directory: flags.txt, checkpoints/, "
                           "tensorboard/, samples/, model.keras, train_log.csv. Rerunning the "
                           "same command resumes from its last checkpoint.")
    model: str = setting("mmali", "Model to train (and models of --plugins).", registry="model")
    plugins: tuple[str, ...] = setting(
        (), "Python module (importable from sys.path; repeat the flag for several) whose "
        "mmali_tf.registry declarations add models, datasets, network families or fusion "
        "methods. Recorded in flags.txt and run.json, so evaluation and export load it too.",
        multi=True)
    max_steps: int = setting(2000, "Total training iterations (each one full critic + "
                             "generator update for mmALI).", lower_bound=1)
    batch_size: int = setting(64, "Global batch size of one draw (split over replicas).",
                              lower_bound=2)
    strategy: str = setting("default", "tf.distribute strategy.", choices=STRATEGIES)
    num_cpu_replicas: int = setting(0, "With --strategy=mirrored and no GPU, split the CPU into "
                                    "this many logical devices (0: use the visible devices).",
                                    lower_bound=0)
    checkpoint_every: int = setting(500, "Write a checkpoint every N steps.", lower_bound=1)
    keep_checkpoints: int = setting(3, "How many checkpoints to keep (at least 2, so a damaged "
                                    "newest one has an intact one to fall back on), besides "
                                    "those --keep_checkpoint_every keeps.",
                                    lower_bound=2)
    keep_checkpoint_every: int = setting(
        0, "Also keep, for good, every checkpoint whose step is a multiple of N (for a step "
        "curve: python -m mmali_tf.evaluate --curve_every=N); the others still rotate under "
        "--keep_checkpoints (0: keep none for good).", lower_bound=0)
    log_every: int = setting(100, "Steps per Keras 'epoch': progress bar, CSV and TensorBoard "
                             "scalars are written at this cadence.", lower_bound=1)
    sample_every: int = setting(1000, "Write sample grids every N steps (0: never).",
                                lower_bound=0)
    jit_compile: Switch = setting(
        AUTO, "Compile train_step with XLA: true, false, or auto: time a few steps of each on "
        "this host and the run's batches (state restored after) and train with the faster; "
        "the choice and both times go to run.json, and a resume reuses them "
        "(mmali_tf/xla.py).")


@dataclasses.dataclass(frozen=True)
class DataSettings(SeedSettings):
    """Data settings every dataset shares, read by the driver (not dataset flags)."""

    dataset: str = setting("digits", "Paired multimodal dataset (and datasets of --plugins).",
                           registry="dataset")
    cache_dir: str = setting("", "Cache of rendered/derived datasets (default: $MMALI_CACHE or "
                             "~/.cache/mmali_tf).")
    augment: tuple[str, ...] = setting(
        (), "Image modalities whose training instances get small random affine maps "
        "(rotation, scale, shift; mmali_tf/data/augment.py).")

    @classmethod
    def dataset_fields(cls) -> tuple[Field, ...]:
        """The fields of this class that are the dataset's own (dataset flags)."""
        shared = set(DataSettings.field_names())
        return tuple(f for f in cls.fields() if f.name not in shared)


#: the driver's settings classes, in flag order (models' and datasets' come from the registry).
DRIVER_SETTINGS: tuple[type[Settings], ...] = (RunSettings, DataSettings)
