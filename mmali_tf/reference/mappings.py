"""Which authors' module plays the role of each of our networks, per model.

`import_state_dict(model, state, ema_state)` assigns an authors' state_dict (and their EMA
model's) to one of our models; `TorchLayout` maps our arrays (weights, gradients) back to the
authors' tensors. Supported: mmALI (6b5d/mmali `FactorModel`), its joint-discriminator ablation
(`JointModel`), MMVAE (iffsid/mmvae), mmJSD / mmJSD-MS (thomassutter/mmjsd: MNIST MLPs, SVHN
convnets, text 1-D convnets), MVAE (mhw32/multimodal-vae-public, MNIST image + label), MoPoE
(thomassutter/MoPoE, PolyMNIST convnets or MLP networks) and MMVAE+ (epalu/mmvaeplus, PolyMNIST
ResNets).
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from mmali_tf.reference.importer import ImportMismatch, Pair, drop_aliases, pair_assignments


def _keys(state: Mapping[str, np.ndarray], root: str, model) -> dict[str, str]:
    """Our modality -> the authors' modality key (their sorted keys, in our modality order)."""
    depth = root.count(".") + 1
    keys = sorted({k.split(".")[depth] for k in state if k.startswith(root + ".")},
                  key=lambda s: (len(s), s) if s.isdigit() else (0, s))
    if len(keys) != len(model.modalities):
        raise ImportMismatch(f"the checkpoint has {len(keys)} modalities under {root}. "
                             f"({keys}), the model has {len(model.modalities)} "
                             f"{model.modalities}")
    return dict(zip(model.modalities, keys))


# ----------------------------------------------------------------------------- mmALI
def _mmali_generators(model, state, encoders, decoders) -> list[Pair]:
    keys = _keys(state, "encoders", model)
    return ([Pair(encoders[m], f"encoders.{k}.module.") for m, k in keys.items()]
            + [Pair(decoders[m], f"decoders.{k}.") for m, k in keys.items()])


def mmali_pairs(model, state) -> list[Pair]:
    """6b5d/mmali FactorModel: encoders, decoders, xz_discriminators[0|1], joint_discriminator."""
    keys = _keys(state, "encoders", model)
    out = _mmali_generators(model, state, model.encoders, model.decoders)
    for m, k in keys.items():
        out += [Pair(model.critics_a[m], f"xz_discriminators.{k}.0."),
                Pair(model.critics_b[m], f"xz_discriminators.{k}.1.")]
    return out + [Pair(model.joint_critic, "joint_discriminator.")]


def mmali_ema_pairs(model, state) -> list[Pair]:
    return _mmali_generators(model, state, model.ema.encoders, model.ema.decoders)


def mmali_joint_pairs(model, state) -> list[Pair]:
    """6b5d/mmali JointModel: encoders, decoders and `discriminators` (MultiXZDiscriminator)."""
    return (_mmali_generators(model, state, model.encoders, model.decoders)
            + [Pair(model.critic, "discriminators.")])


# ----------------------------------------------------------------------------- MMVAE
def mmvae_pairs(model, state) -> list[Pair]:
    """iffsid/mmvae MMVAE: vaes.<i>.enc (mean/scale heads fc21+fc22 or c1+c2), vaes.<i>.dec,
    and the learned prior's logits `_pz_params.1`."""
    keys = _keys(state, "vaes", model)
    out = []
    for m, k in keys.items():
        heads = ("fc21", "fc22") if f"vaes.{k}.enc.fc21.weight" in state else ("c1", "c2")
        out.append(Pair(model.encoders[m], f"vaes.{k}.enc.", merge=heads))
    out += [Pair(model.decoders[m], f"vaes.{k}.dec.") for m, k in keys.items()]
    if model.learn_prior:
        out.append(Pair(model.prior_logits, "_pz_params.1"))
    return out


# ----------------------------------------------------------------------------- mmJSD
def mmjsd_pairs(model, state) -> list[Pair]:
    """thomassutter/mmjsd VAEtrimodalSVHNMNIST: encoder_<m> (heads style_mu, class_mu,
    style_logvar, class_logvar, or without style hidden_mu, hidden_logvar of the image
    networks and latent_mu, latent_logvar of the text network) and decoder_<m>, matched by
    modality name (MNIST MLPs, the SVHN convnets as our `mmjsd_svhn`, the text 1-D convnets
    as our `text_conv`)."""
    missing = [m for m in model.modalities
               if not any(k.startswith(f"encoder_{m}.") for k in state)]
    if missing:
        raise ImportMismatch(f"missing tensor: no encoder_{missing[0]}.* in the checkpoint "
                             f"(modalities {model.modalities})")

    def heads(m: str) -> tuple[str, ...]:
        if model.uses_style:
            return ("style_mu", "class_mu", "style_logvar", "class_logvar")
        text = any(k.startswith(f"encoder_{m}.latent_mu.") for k in state)
        return ("latent_mu", "latent_logvar") if text else ("hidden_mu", "hidden_logvar")
    return ([Pair(model.encoders[m], f"encoder_{m}.", merge=heads(m)) for m in model.modalities]
            + [Pair(model.decoders[m], f"decoder_{m}.") for m in model.modalities])


# ----------------------------------------------------------------------------- MVAE
def mvae_pairs(model, state) -> list[Pair]:
    """mhw32/multimodal-vae-public MVAE (mnist/model.py): image_encoder (heads fc31+fc32),
    image_decoder, text_encoder (fc1 an nn.Embedding, heads fc31+fc32), text_decoder. Their
    `text` is our `categorical` modality, their `image` the other one."""
    labels = [s.name for s in model.specs if s.likelihood == "categorical"]
    if len(model.modalities) != 2 or len(labels) != 1:
        raise ImportMismatch(f"the authors' MVAE has an image and a label modality; this model "
                             f"has {model.modalities} ({len(labels)} with a categorical "
                             "likelihood)")
    image = next(m for m in model.modalities if m != labels[0])
    heads = ("fc31", "fc32")
    return [Pair(model.encoders[image], "image_encoder.", merge=heads),
            Pair(model.decoders[image], "image_decoder."),
            Pair(model.encoders[labels[0]], "text_encoder.", merge=heads, embeddings=("fc1",)),
            Pair(model.decoders[labels[0]], "text_decoder.")]
# ----------------------------------------------------------------------------- MoPoE, MMVAE+
def mopoe_pairs(model, state) -> list[Pair]:
    """thomassutter/MoPoE BaseMMVae: encoders.<m> (heads class_mu + class_logvar of the
    PolyMNIST convnets, hidden_mu + hidden_logvar of the MNIST MLPs) and decoders.<m>, matched
    by modality name when the checkpoint uses ours, else their modality keys in sorted order."""
    by_name = all(any(k.startswith(f"encoders.{m}.") for k in state) for m in model.modalities)
    keys = {m: m for m in model.modalities} if by_name else _keys(state, "encoders", model)

    def heads(k: str) -> tuple[str, str]:
        mlp = any(key.startswith(f"encoders.{k}.hidden_mu.") for key in state)
        return ("hidden_mu", "hidden_logvar") if mlp else ("class_mu", "class_logvar")
    return ([Pair(model.encoders[m], f"encoders.{k}.", merge=heads(k)) for m, k in keys.items()]
            + [Pair(model.decoders[m], f"decoders.{k}.") for m, k in keys.items()])


def mmvae_plus_pairs(model, state) -> list[Pair]:
    """epalu/mmvaeplus: vaes.<i>.enc (their ResNet `Enc`, our `mmvaeplus_resnet` encoder: the
    w trunk with heads fc_mu_w, fc_lv_w, then the z trunk with fc_mu_z, fc_lv_z), vaes.<i>.dec,
    and the auxiliary priors' logits `vaes.<i>._pw_params.1` (one row each of our
    `aux_prior_logits`)."""
    keys = _keys(state, "vaes", model)
    other = next((s for s in model.specs if s.network != "mmvaeplus_resnet"), None)
    if other is not None:
        raise ImportMismatch(f"the authors' MMVAE+ networks are the 'mmvaeplus_resnet' family "
                             f"(--poly_network=mmvaeplus_resnet); modality {other.name!r} uses "
                             f"{other.network!r}")
    return ([Pair(model.encoders[m], f"vaes.{k}.enc.") for m, k in keys.items()]
            + [Pair(model.decoders[m], f"vaes.{k}.dec.") for m, k in keys.items()]
            + [Pair(model.aux_prior_logits,
                    "+".join(f"vaes.{k}._pw_params.1" for k in keys.values()))])


class ModelMap:
    """How one registry model's networks correspond to the authors' state_dict."""

    def __init__(self, pairs: Callable, ema_pairs: Callable | None = None,
                 aliases: tuple[str, ...] = (), ignore: tuple[str, ...] = ()) -> None:
        self.pairs, self.ema_pairs = pairs, ema_pairs
        self.aliases, self.ignore = aliases, ignore


#: registry model name -> ModelMap. `ignore`: tensors the authors keep but never use.
MODEL_MAPS: dict[str, ModelMap] = {
    "mmali": ModelMap(mmali_pairs, mmali_ema_pairs,
                      aliases=("generators.", "discriminators.")),
    "mmali_joint": ModelMap(mmali_joint_pairs, mmali_ema_pairs, aliases=("generators.",)),
    "mmvae": ModelMap(mmvae_pairs, ignore=("_pz_params.",)),
    "mmjsd": ModelMap(mmjsd_pairs, ignore=("encoder_text.", "decoder_text.")),
    "mmjsd_ms": ModelMap(mmjsd_pairs, ignore=("encoder_text.", "decoder_text.")),
    "mvae": ModelMap(mvae_pairs),
    "mopoe": ModelMap(mopoe_pairs),
    # the fixed prior p(u) and r_d(w)'s zero means are not trained
    "mmvae_plus": ModelMap(mmvae_plus_pairs, ignore=("_pu_params.", "_pw_params.0")),
}


def model_map(model) -> ModelMap:
    name = model.variant
    if name not in MODEL_MAPS:
        raise ImportMismatch(f"no weight mapping for model {name!r}; known: "
                             f"{sorted(MODEL_MAPS)}")
    return MODEL_MAPS[name]


def assignments(model, state, ema_state=None) -> list:
    """Checked (variable, value, torch key) triples of the whole import."""
    mm = model_map(model)
    state = drop_aliases(state, mm.aliases)
    out = pair_assignments(mm.pairs(model, state), state, mm.ignore)
    if ema_state is not None:
        if model.ema is None or mm.ema_pairs is None:
            raise ImportMismatch("the checkpoint has an EMA model but this model has no EMA "
                                 "(set --ema_decay)")
        ema_state = drop_aliases(ema_state, mm.aliases)
        critics = tuple({k.split(".")[0] + "." for k in ema_state
                         if not k.startswith(("encoders.", "decoders."))})
        out += [(v, x, "ema:" + k) for v, x, k in
                pair_assignments(mm.ema_pairs(model, ema_state), ema_state, critics)]
    return out


def import_state_dict(model, state: Mapping[str, np.ndarray],
                      ema_state: Mapping[str, np.ndarray] | None = None) -> None:
    """Assign the authors' `state` (and `ema_state`, their EMA model) to `model`.

    Raises ImportMismatch, before assigning anything, when a tensor is missing, extra or
    misshaped. The EMA state's critic tensors are ignored (the authors' EMA copies the whole
    model but only its generators are averaged).
    """
    for var, value, _ in assignments(model, state, ema_state):
        var.assign(np.asarray(value, np.float32))


class TorchLayout:
    """Maps arrays in our layout (by variable) back to the authors' tensors (by key)."""

    def __init__(self, model, shapes: Mapping[str, tuple[int, ...]]) -> None:
        self.shapes = {k: tuple(s) for k, s in shapes.items()}
        offsets, index_state, start = {}, {}, 0
        for k, s in self.shapes.items():
            size = int(np.prod(s))
            index_state[k] = np.arange(start, start + size, dtype=np.float64).reshape(s)
            offsets[k] = start
            start += size
        self._starts = np.array(list(offsets.values()))
        self._keys = list(offsets)
        self._index = {id(v): idx.astype(np.int64).ravel()
                       for v, idx, _ in assignments(model, index_state)}

    def keys_of(self, variable) -> list[str]:
        idx = self._index[id(variable)]
        return sorted({self._keys[i] for i in np.searchsorted(self._starts, idx, "right") - 1})

    def convert(self, pairs) -> dict[str, np.ndarray]:
        """{torch key: array} from (variable, array in our layout) pairs."""
        flat = {}
        for var, value in pairs:
            idx = self._index[id(var)]
            which = np.searchsorted(self._starts, idx, "right") - 1
            value = np.asarray(value).ravel()
            for w in np.unique(which):
                key = self._keys[w]
                dst = flat.setdefault(key, np.zeros(int(np.prod(self.shapes[key])),
                                                    value.dtype))
                sel = which == w
                dst[idx[sel] - self._starts[w]] = value[sel]
        return {k: v.reshape(self.shapes[k]) for k, v in flat.items()}
