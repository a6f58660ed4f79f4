"""flags.txt's text format and which flags fix a run's variables (no TensorFlow, no absl).

`run_dir` writes and compares run directories with these; `run_record` checks what it reads.
"""

from __future__ import annotations

from typing import Any, Mapping

#: Flags that change the variables (or the data identity) of every run; a run directory
#: trained with other values cannot be resumed. `shape_flags` adds the model's and the
#: dataset's own (`MultimodalModel.shape_flags`, `register_dataset(shape_flags=...)`).
BASE_SHAPE_FLAGS = ("model", "dataset", "latent_dim", "style_dim", "amsgrad")


def flag_value_text(value: Any) -> str:
    """A flag value as flags.txt writes it (booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def format_flags(values: Mapping[str, Any]) -> str:
    """`--name=value` lines (booleans as true/false, list flags repeated) for a flagfile.

    Flags whose value is None (an unset optional flag such as `--g_lr`) are left out, so the
    replay leaves them unset too.
    """
    lines = []
    for name, value in values.items():
        if value is None:
            continue
        items = value if isinstance(value, (list, tuple)) else [value]
        lines += [f"--{name}={flag_value_text(v)}" for v in items]
    return "\n".join(lines) + "\n"


def parse_flags_text(text: str) -> dict[str, str]:
    """Inverse of `format_flags` as strings: {name: value text} (repeated flags joined by ',')."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("--") or "=" not in line:
            continue
        name, value = line[2:].split("=", 1)
        out.setdefault(name, []).append(value)
    return {k: ",".join(v) for k, v in out.items()}


def shape_flags(model: str, dataset: str) -> tuple[str, ...]:
    """Shape/identity flags of a run of `model` on `dataset` (registered names; an unknown
    name adds nothing, and `model`/`dataset` themselves are always compared)."""
    from mmali_tf import registry

    out = list(BASE_SHAPE_FLAGS)
    if model in registry.names("model"):
        out += registry.load("model", model).shape_flags
    if dataset in registry.names("dataset"):
        out += registry.get("dataset", dataset).option("shape_flags", ())
    return tuple(dict.fromkeys(out))
