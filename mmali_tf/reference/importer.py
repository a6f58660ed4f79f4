"""Map an authors' PyTorch state_dict onto this project's Keras networks.

Each network (or variable) of a model is paired with the state_dict prefix of the authors'
module that plays its role (`mmali_tf.reference.mappings`). Within a network, the
weight-carrying layers of both sides are matched in order (Keras topological order, PyTorch
registration order) and converted with `mmali_tf.reference.layout`; two torch heads that our
network computes as one layer (e.g. MMVAE's `fc21`/`fc22`) are concatenated first. Every tensor
is checked before anything is assigned: a missing, extra or misshaped tensor raises
`ImportMismatch` (one line naming the tensor and both shapes) and leaves the model untouched.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import keras
import numpy as np

from mmali_tf.networks.spectral_norm import SNConv2D, SNDense
from mmali_tf.reference import layout

#: our convolution layers -> the rank of the torch kernel each one takes
CONVS = {keras.layers.Conv1D: 3, keras.layers.Conv1DTranspose: 3, keras.layers.Conv2D: 4,
         keras.layers.Conv2DTranspose: 4, SNConv2D: 4}
WEIGHTED = (keras.layers.Dense, SNDense, *CONVS)
TORCH_NAMES = {"kernel": None, "bias": "bias", "sn_u": "weight_u", "sn_v": "weight_v"}


class ImportMismatch(ValueError):
    """The state_dict does not fit the model (the message names the tensor and both shapes)."""


@dataclass
class Pair:
    """Our `target` (a Keras network or one variable) and the authors' module `prefix`
    (for a variable: its exact key, or several keys joined by "+" whose tensors the variable
    holds one after the other, e.g. one row per modality). `merge`: sibling modules under
    `prefix` whose outputs our network computes with one layer (concatenated along the output
    axis). `embeddings`: modules under `prefix` that are `nn.Embedding(K, n)` tables, which our
    network holds as the kernel (K, n) of a bias-free Dense on one-hot inputs (same layout, not
    transposed)."""

    target: object
    prefix: str
    merge: Sequence[str] = ()
    embeddings: Sequence[str] = ()


@dataclass
class TorchLayer:
    """One torch module's tensors (suffix -> array) and the state_dict keys they came from."""

    path: str
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def spectral(self) -> bool:
        return "weight_orig" in self.tensors

    @property
    def weight_key(self) -> str:
        return "weight_orig" if self.spectral else "weight"


def torch_layers(state: Mapping[str, np.ndarray], prefix: str,
                 merge: Sequence[str] = ()) -> list[TorchLayer]:
    """Modules under `prefix` that hold tensors, in state_dict order (`merge` modules joined)."""
    groups: OrderedDict[str, TorchLayer] = OrderedDict()
    for key, value in state.items():
        if key.startswith(prefix):
            path, _, suffix = key.rpartition(".")
            tl = groups.setdefault(path, TorchLayer(path))
            tl.tensors[suffix], tl.keys[suffix] = np.asarray(value), key
    if merge:
        parts = [groups.pop(prefix + m, None) for m in merge]
        if any(p is None for p in parts):
            missing = [prefix + m for m, p in zip(merge, parts) if p is None]
            raise ImportMismatch(f"missing tensor: no module {missing[0]} in the checkpoint")
        joined = TorchLayer("+".join(p.path for p in parts))
        for suffix in parts[0].tensors:
            joined.tensors[suffix] = np.concatenate([p.tensors[suffix] for p in parts], 0)
            joined.keys[suffix] = "+".join(p.keys[suffix] for p in parts)
        groups[joined.path] = joined
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


def _convert(layer, tl: TorchLayer, embedding: bool = False) -> list[tuple[str, np.ndarray]]:
    """(our variable name, value) pairs for one layer from its torch module (`embedding`: an
    nn.Embedding table, already in Dense kernel layout)."""
    w = tl.tensors[tl.weight_key]
    rank = next((r for cls, r in CONVS.items() if isinstance(layer, cls)), None)
    if rank is not None and w.ndim != rank:
        raise ImportMismatch(f"{tl.keys[tl.weight_key]}: shape {_shape(w)} is no "
                             f"{rank - 2}-D convolution kernel, but {layer.name} is one "
                             f"{_shape(layer.weights[0])}")
    in_chw = out_chw = None
    if embedding:
        kernel = w
    elif isinstance(layer, (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose)):
        kernel = layout.conv_transpose_kernel(w)
    elif rank is not None:
        kernel = layout.conv_kernel(w)
    elif w.ndim == 4:
        kernel = layout.conv_as_dense_kernel(w)
    else:
        in_chw, out_chw = _flatten_input_chw(layer), _reshape_output_chw(layer)
        kernel = layout.dense_kernel(w, in_chw, out_chw)
    out = [("kernel", kernel)]
    if "bias" in tl.tensors:
        out.append(("bias", layout.dense_bias(tl.tensors["bias"], out_chw)))
    if tl.spectral:
        out += [("sn_u", tl.tensors["weight_u"]),
                ("sn_v", layout.sn_v(tl.tensors["weight_v"], w.shape, in_chw))]
    return out


def _shape(a) -> tuple[int, ...]:
    return tuple(int(s) for s in np.shape(a))


def network_assignments(net: keras.Model, state: Mapping[str, np.ndarray], prefix: str,
                        merge: Sequence[str] = (), embeddings: Sequence[str] = ()
                        ) -> list[tuple[keras.Variable, np.ndarray, str]]:
    """Checked (variable, value, torch key) triples for `net` from the tensors under `prefix`
    (`merge`, `embeddings`: see `Pair`)."""
    ours, theirs = keras_layers(net), torch_layers(state, prefix, merge)
    out = []
    for i in range(max(len(ours), len(theirs))):
        if i >= len(theirs):
            raise ImportMismatch(f"missing tensor: no {prefix}* module for {net.name}/"
                                 f"{ours[i].name} {_shape(ours[i].weights[0])}")
        tl = theirs[i]
        if i >= len(ours):
            raise ImportMismatch(f"unexpected tensor {tl.keys[tl.weight_key]} "
                                 f"{_shape(tl.tensors[tl.weight_key])}: {net.name} has no "
                                 "layer left for it")
        layer = ours[i]
        if tl.spectral != isinstance(layer, (SNDense, SNConv2D)):
            raise ImportMismatch(f"{tl.path}: spectral norm is {'on' if tl.spectral else 'off'} "
                                 f"in the checkpoint but not in {net.name}/{layer.name}")
        variables = {v.name: v for v in layer.weights}
        for name, value in _convert(layer, tl, tl.path in {prefix + e for e in embeddings}):
            key = tl.keys[TORCH_NAMES[name] or tl.weight_key]
            var = variables.pop(name, None)
            if var is None or _shape(var) != _shape(value):
                raise ImportMismatch(
                    f"{key}: shape {_shape(tl.tensors[TORCH_NAMES[name] or tl.weight_key])} "
                    f"(as {_shape(value)} in Keras layout) does not fit {net.name}/"
                    f"{layer.name}/{name} {None if var is None else _shape(var)}")
            out.append((var, value, key))
        if variables:
            name = next(iter(variables))
            raise ImportMismatch(f"missing tensor for {net.name}/{layer.name}/{name} "
                                 f"{_shape(variables[name])} in {tl.path}")
    return out


def pair_assignments(pairs: Sequence[Pair], state: Mapping[str, np.ndarray],
                     ignore: Sequence[str] = ()) -> list[tuple[keras.Variable, np.ndarray, str]]:
    """Checked triples for every pair; a state key no pair uses (and containing none of the
    strings in `ignore`) is an error."""
    out = []
    for p in pairs:
        if isinstance(p.target, keras.Model):
            out += network_assignments(p.target, state, p.prefix, p.merge, p.embeddings)
            continue
        keys = p.prefix.split("+")
        missing = [k for k in keys if k not in state]
        if missing:
            raise ImportMismatch(f"missing tensor {missing[0]} for {p.target.path} "
                                 f"{_shape(p.target)}")
        value = np.concatenate([np.asarray(state[k]).ravel() for k in keys])
        if value.size != int(np.prod(_shape(p.target))):
            raise ImportMismatch(f"{p.prefix}: shape {_shape(value)} does not fit "
                                 f"{p.target.path} {_shape(p.target)}")
        out.append((p.target, value.reshape(_shape(p.target)), p.prefix))
    used = {k for _, _, key in out for k in key.split("+")}
    extra = [k for k in state if k not in used and not any(s in k for s in ignore)]
    if extra:
        raise ImportMismatch(f"unexpected tensor {extra[0]} {_shape(state[extra[0]])}: nothing "
                             f"in the model takes it ({len(extra)} unused in all)")
    return out


def drop_aliases(state: Mapping[str, np.ndarray], aliases: Sequence[str]) -> dict:
    """`state` without keys `<alias><key>` that repeat `<key>` (modules registered twice)."""
    out = {}
    for k, v in state.items():
        alias = next((a for a in aliases if k.startswith(a)), None)
        if alias is None:
            out[k] = v
            continue
        primary = k[len(alias):]
        if primary not in state or _shape(state[primary]) != _shape(v):
            found = _shape(state[primary]) if primary in state else "absent"
            raise ImportMismatch(f"unexpected tensor {k} {_shape(v)}: it should repeat "
                                 f"{primary}, which is {found}")
    return out
