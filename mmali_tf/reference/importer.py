"""Map an authors' PyTorch state_dict onto this project's Keras networks.

Each network of a model is paired with the state_dict prefix of the authors' module that plays
its role (`MAPPINGS`). Within a pair, the weight-carrying layers of both sides are matched in
order (Keras topological order, PyTorch registration order) and converted with
`mmali_tf.reference.layout`. Every tensor is checked before anything is assigned, so a missing,
extra or misshaped tensor raises `ImportMismatch` (one line naming the tensor and both shapes)
and leaves the model untouched.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Mapping

import keras
import numpy as np

from mmali_tf.networks.spectral_norm import SNConv2D, SNDense
from mmali_tf.reference import layout

WEIGHTED = (keras.layers.Dense, keras.layers.Conv2D, keras.layers.Conv2DTranspose, SNDense,
            SNConv2D)
SN_SUFFIXES = ("weight_orig", "weight_u", "weight_v")


class ImportMismatch(ValueError):
    """The state_dict does not fit the model (the message names the tensor and both shapes)."""


@dataclass
class TorchLayer:
    """One torch module's tensors: `path` (module prefix) and `tensors` (suffix -> array)."""

    path: str
    tensors: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def spectral(self) -> bool:
        return "weight_orig" in self.tensors

    @property
    def weight_key(self) -> str:
        return "weight_orig" if self.spectral else "weight"


def torch_layers(state: Mapping[str, np.ndarray], prefix: str) -> list[TorchLayer]:
    """Modules under `prefix` that hold a weight, in state_dict order."""
    groups: OrderedDict[str, TorchLayer] = OrderedDict()
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        path, _, suffix = key.rpartition(".")
        groups.setdefault(path, TorchLayer(path)).tensors[suffix] = np.asarray(value)
    return list(groups.values())


def keras_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Weight-carrying layers of `model`, nested models expanded, in topological order."""
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out += keras_layers(layer)
        elif isinstance(layer, WEIGHTED):
            out.append(layer)
    return out


def _flatten_input_chw(layer) -> tuple[int, int, int] | None:
    """(C, H, W) of the NHWC map a Flatten feeds into `layer`, when it has several channels."""
    try:
        src = layer._inbound_nodes[0].input_tensors[0]._keras_history.operation
    except (AttributeError, IndexError):
        return None
    if not isinstance(src, keras.layers.Flatten):
        return None
    shape = src._inbound_nodes[0].input_tensors[0].shape
    if len(shape) != 4 or shape[3] == 1 or shape[1] * shape[2] == 1:
        return None
    return int(shape[3]), int(shape[1]), int(shape[2])


def _reshape_output_chw(layer) -> tuple[int, int, int] | None:
    """(C, H, W) a Reshape after `layer` gives its output, when it has several channels."""
    for node in getattr(layer, "_outbound_nodes", []):
        op = node.operation
        if isinstance(op, keras.layers.Reshape):
            shape = tuple(op.target_shape)
            if len(shape) == 3 and shape[2] > 1:
                return shape[2], shape[0], shape[1]
    return None


def _convert(layer, tl: TorchLayer) -> list[tuple[str, np.ndarray]]:
    """(our variable name, value) pairs for one layer from its torch module."""
    w = tl.tensors[tl.weight_key]
    in_chw = None
    if isinstance(layer, keras.layers.Conv2DTranspose):
        kernel = layout.conv_transpose_kernel(w)
    elif isinstance(layer, (keras.layers.Conv2D, SNConv2D)):
        kernel = layout.conv_kernel(w)
    elif w.ndim == 4:
        kernel = layout.conv_as_dense_kernel(w)
    else:
        in_chw = _flatten_input_chw(layer)
        kernel = layout.dense_kernel(w, in_chw, _reshape_output_chw(layer))
    out = [("kernel", kernel)]
    if "bias" in tl.tensors:
        out.append(("bias", tl.tensors["bias"]))
    if tl.spectral:
        out += [("sn_u", tl.tensors["weight_u"]),
                ("sn_v", layout.sn_v(tl.tensors["weight_v"], w.shape, in_chw))]
    return out


def network_assignments(net: keras.Model, state: Mapping[str, np.ndarray],
                        prefix: str) -> tuple[list[tuple[keras.Variable, np.ndarray, str]], set[str]]:
    """Checked (variable, value, torch key) triples for `net` from the tensors under `prefix`,
    and the keys used."""
    ours, theirs = keras_layers(net), torch_layers(state, prefix)
    pairs, used = [], set()
    for i in range(max(len(ours), len(theirs))):
        if i >= len(theirs):
            raise ImportMismatch(f"missing tensor: no {prefix}* module for {net.name}/"
                                 f"{ours[i].name} {tuple(ours[i].weights[0].shape)}")
        tl = theirs[i]
        if i >= len(ours):
            key = f"{tl.path}.{tl.weight_key}"
            raise ImportMismatch(f"unexpected tensor {key} {tuple(tl.tensors[tl.weight_key].shape)}"
                                 f": {net.name} has no layer left for it")
        layer = ours[i]
        if tl.spectral != isinstance(layer, (SNDense, SNConv2D)):
            raise ImportMismatch(f"{tl.path}: spectral norm is {'on' if tl.spectral else 'off'} "
                                 f"in the checkpoint but not in {net.name}/{layer.name}")
        variables = {v.name: v for v in layer.weights}
        for name, value in _convert(layer, tl):
            torch_key = f"{tl.path}.{dict(kernel=tl.weight_key, sn_u='weight_u', sn_v='weight_v').get(name, name)}"
            var = variables.pop(name, None)
            if var is None or tuple(var.shape) != value.shape:
                theirs_shape = tuple(state[torch_key].shape)
                raise ImportMismatch(
                    f"{torch_key}: shape {theirs_shape} (as {value.shape} in Keras layout) does "
                    f"not fit {net.name}/{layer.name}/{name} "
                    f"{None if var is None else tuple(var.shape)}")
            pairs.append((var, value, torch_key))
            used.add(torch_key)
        if variables:
            name = next(iter(variables))
            raise ImportMismatch(f"missing tensor for {net.name}/{layer.name}/{name} "
                                 f"{tuple(variables[name].shape)} in {tl.path}")
    return pairs, used


# ----------------------------------------------------------------------------- per-model maps
Pairing = list[tuple[keras.Model, str]]


def _keys(state: Mapping[str, np.ndarray], root: str, model) -> dict[str, str]:
    """Our modality -> the authors' modality key (their sorted keys, in our modality order)."""
    keys = sorted({k.split(".")[1] for k in state if k.startswith(root + ".")})
    if len(keys) != len(model.modalities):
        raise ImportMismatch(f"the checkpoint has {len(keys)} modalities under {root}. "
                             f"({keys}), the model has {len(model.modalities)} "
                             f"{model.modalities}")
    return dict(zip(model.modalities, keys))


def _mmali_generators(model, state, encoders, decoders) -> Pairing:
    keys = _keys(state, "encoders", model)
    return ([(encoders[m], f"encoders.{k}.module.") for m, k in keys.items()]
            + [(decoders[m], f"decoders.{k}.") for m, k in keys.items()])


def mmali_pairing(model, state) -> Pairing:
    """6b5d/mmali FactorModel: encoders, decoders, xz_discriminators[0|1], joint_discriminator."""
    keys = _keys(state, "encoders", model)
    out = _mmali_generators(model, state, model.encoders, model.decoders)
    for m, k in keys.items():
        out += [(model.critics_a[m], f"xz_discriminators.{k}.0."),
                (model.critics_b[m], f"xz_discriminators.{k}.1.")]
    return out + [(model.joint_critic, "joint_discriminator.")]


MAPPINGS: dict[str, Callable] = {"mmali": mmali_pairing}
#: prefixes under which a model registers the same modules a second time
ALIASES: dict[str, tuple[str, ...]] = {"mmali": ("generators.", "discriminators.")}
EMA_MAPPINGS: dict[str, Callable] = {
    "mmali": lambda model, state: _mmali_generators(model, state, model.ema.encoders,
                                                    model.ema.decoders)}


def drop_aliases(state: Mapping[str, np.ndarray], aliases: tuple[str, ...]) -> dict:
    """`state` without keys `<alias><key>` that repeat `<key>` (modules registered twice)."""
    out = {}
    for k, v in state.items():
        alias = next((a for a in aliases if k.startswith(a)), None)
        if alias is None:
            out[k] = v
            continue
        primary = k[len(alias):]
        if primary not in state or np.shape(state[primary]) != np.shape(v):
            raise ImportMismatch(f"unexpected tensor {k} {tuple(np.shape(v))}: it should repeat "
                                 f"{primary} but that is "
                                 f"{tuple(np.shape(state[primary])) if primary in state else 'absent'}")
    return out


def _assignments(pairing: Pairing, state: Mapping[str, np.ndarray],
                 ignore: tuple[str, ...] = ()) -> list:
    pairs, used = [], set()
    for net, prefix in pairing:
        p, u = network_assignments(net, state, prefix)
        pairs += p
        used |= u
    extra = [k for k in state if k not in used and not k.startswith(ignore)]
    if extra:
        raise ImportMismatch(f"unexpected tensor {extra[0]} {tuple(np.shape(state[extra[0]]))}: "
                             f"nothing in the model takes it ({len(extra)} unused in all)")
    return pairs


def _model_pairs(model, state, ema_state) -> list:
    name = model.config.get("model", getattr(model, "registry_name", ""))
    if name not in MAPPINGS:
        raise ImportMismatch(f"no weight mapping for model {name!r}; known: {sorted(MAPPINGS)}")
    state = drop_aliases(state, ALIASES.get(name, ()))
    pairs = _assignments(MAPPINGS[name](model, state), state)
    if ema_state is not None:
        ema_state = drop_aliases(ema_state, ALIASES.get(name, ()))
        if model.ema is None:
            raise ImportMismatch("the checkpoint has an EMA model but this model has no EMA "
                                 "(set --ema_decay)")
        gen = ("encoders.", "decoders.")
        pairs += [(v, x, "ema:" + k) for v, x, k in _assignments(
            EMA_MAPPINGS[name](model, ema_state), ema_state,
            ignore=tuple(k.split(".")[0] + "." for k in ema_state if not k.startswith(gen)))]
    return pairs


def import_state_dict(model, state: Mapping[str, np.ndarray],
                      ema_state: Mapping[str, np.ndarray] | None = None) -> None:
    """Assign the authors' `state` (and `ema_state`, their EMA model) to `model`.

    Raises ImportMismatch, before assigning anything, when a tensor is missing, extra or
    misshaped. The EMA state's critic tensors are ignored (the authors' EMA copies the whole
    model but only the generators are averaged).
    """
    for var, value, _ in _model_pairs(model, state, ema_state):
        var.assign(np.asarray(value, np.float32))


def torch_layout(model, shapes: Mapping[str, tuple[int, ...]]) -> dict[int, tuple[str, Callable]]:
    """id(variable) -> (torch key, fn) where fn maps an array in our layout (e.g. a gradient)
    back to the torch tensor's layout (the inverse of the import's permutations)."""
    index_state = {k: np.arange(int(np.prod(s)), dtype=np.float64).reshape(s)
                   for k, s in shapes.items()}
    out = {}
    for var, idx, key in _model_pairs(model, index_state, None):
        flat_idx = idx.astype(np.int64).ravel()

        def to_torch(a, flat_idx=flat_idx, shape=tuple(shapes[key])):
            res = np.empty(flat_idx.size, np.asarray(a).dtype)
            res[flat_idx] = np.asarray(a).ravel()
            return res.reshape(shape)
        out[id(var)] = (key, to_torch)
    return out
