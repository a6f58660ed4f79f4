"""Export a MultimodalModel to an ONNX bundle (the TensorFlow side of `export`).

`export_bundle(model, out_dir)` traces one `tf.function` per graph through the model's
inference interface only (`encode`, `decode`, `fuse`, `prior_params`, `layout`, ...), converts
it with `tf2onnx.convert.from_function`, names the dynamic axis `batch`, embeds the manifest in
`metadata_props`, runs `onnx.checker.check_model(full_check=True)` and writes the bundle
atomically (a temporary directory beside the target, renamed at the end), then
`<out_dir>.sha256`: the manifest's sha256 in `sha256sum` format, for apps to pin. Every
initializer of at least 1 KB is stored once, in `weights.bin`, which the graphs refer to as
ONNX external data (`mmali_tf.export.shared_weights`): a digits mmALI bundle holds each
network's weights once instead of in up to four graphs.

Graphs (every input/output has the dynamic leading axis `batch`):
  encoder_<m>      x -> mean, logvar (logvar absent for deterministic encoders)
  decoder_<m>      z -> x
  fuse_<method>    mean_<m>, logvar_<m> for every m, mask (batch, M) -> mean, logvar (content)
  translate_<a>_to_<b>  x, noise (posterior), style_noise (target style) -> x_out, z
  translate_subset_to_<b>  (stochastic models with M > 2) x_<m> for every m, mask (batch, M),
                   noise (content), style_noise -> x_out, z: decode b from a sample of the
                   default fusion of the present modalities
  reconstruct_<m>  x, noise -> x_out, z
(tf2onnx needs output names distinct from input names, hence `x_out`.)
  generate         content_noise, style_noise_<m> -> x_<m> for every m
Noise inputs exist only where needed (no `noise` for deterministic encoders, no style noise
when style_dim = 0). tf2onnx 1.17 runs on numpy 2 without Keras's `patch_tf2onnx` for these
graphs: its numpy-1-only code (`np.product`) lies on its external-tensor path, which we never
use (the weights are shared after conversion).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import onnx
import tensorflow as tf
import tf2onnx

import mmali_tf
from mmali_tf.export import manifest as manifest_lib
from mmali_tf.export import shared_weights
from mmali_tf import latent as latent_lib

MIN_OPSET, MAX_OPSET = 14, 18
WEIGHTS = ("ema", "raw")


@dataclasses.dataclass
class GraphPlan:
    """One graph to export: a TensorFlow function of `inputs` returning a dict of tensors."""

    name: str
    role: str
    fn: Callable[..., dict[str, tf.Tensor]]
    inputs: list[tf.TensorSpec]
    info: dict[str, Any]

    def function(self) -> Callable[..., dict[str, tf.Tensor]]:
        """The plan's computation as a `tf.function` with its input signature."""
        return tf.function(self.fn, input_signature=self.inputs, autograph=False)


def _spec(name: str, shape: tuple[int, ...]) -> tf.TensorSpec:
    return tf.TensorSpec((None,) + tuple(shape), tf.float32, name=name)


class _Graphs:
    """Builds the `GraphPlan`s of one model with one weight set (EMA or raw)."""

    def __init__(self, model: Any, ema: bool) -> None:
        self.model, self.ema = model, ema
        self.layout = model.layout
        self.family = model.posterior_family
        self.stochastic = not bool(model.deterministic)
        self.shapes = {s.name: tuple(s.shape) for s in model.specs}

    # ------------------------------------------------------------------ shared pieces
    def _sample(self, modality: str, x: tf.Tensor, noise: tf.Tensor | None) -> tf.Tensor:
        mean, logvar = self.model.encode(modality, x, ema=self.ema)
        if logvar is None:
            return mean
        return latent_lib.reparameterize(mean, logvar, noise, self.family)

    def _prior_latent(self, noise: tf.Tensor) -> tf.Tensor:
        mean, logvar = self.model.prior_params()
        return latent_lib.reparameterize(mean, logvar, noise, self.family)

    def _prior_style(self, style_noise: tf.Tensor) -> tf.Tensor:
        mean, logvar = self.model.prior_params()
        return latent_lib.reparameterize(self.layout.style(mean), self.layout.style(logvar),
                                         style_noise, self.family)

    def _x(self, modality: str) -> tf.TensorSpec:
        return _spec("x", self.shapes[modality])

    def _noise(self) -> list[tf.TensorSpec]:
        return [_spec("noise", (self.layout.latent_dim,))] if self.stochastic else []

    def _style(self, name: str) -> list[tf.TensorSpec]:
        return [_spec(name, (self.layout.style_dim,))] if self.layout.style_dim else []

    # ------------------------------------------------------------------ graphs
    def encoder(self, m: str) -> GraphPlan:
        def fn(x):
            mean, logvar = self.model.encode(m, x, ema=self.ema)
            return {"mean": mean} if logvar is None else {"mean": mean, "logvar": logvar}
        return GraphPlan(f"encoder_{m}", "encoder", fn, [self._x(m)], {"modality": m})

    def decoder(self, m: str) -> GraphPlan:
        def fn(z):
            return {"x": self.model.decode(m, z, ema=self.ema)}
        return GraphPlan(f"decoder_{m}", "decoder", fn, [_spec("z", (self.layout.latent_dim,))],
                         {"modality": m})

    def _fuse_masked(self, params: Mapping[str, tuple[tf.Tensor, tf.Tensor]], mask: tf.Tensor,
                     method: str) -> tuple[tf.Tensor, tf.Tensor]:
        """Per row, `model.fuse` of the subset of modalities whose mask entry is set."""
        mods = self.model.modalities
        bits = {m: 2 ** i for i, m in enumerate(mods)}
        subsets = [s for k in range(1, len(mods) + 1) for s in itertools.combinations(mods, k)]
        # each row selects the fusion of its present subset, coded as sum of 2^k
        present = tf.cast(mask > 0.5, tf.int32)
        code = tf.reduce_sum(present * tf.constant(list(bits.values()), tf.int32), axis=-1,
                             keepdims=True)
        # tf2onnx may lower tf.where to `c * a + (1 - c) * b`: every candidate must be finite
        mean = logvar = tf.zeros(tf.shape(self.layout.content(params[mods[0]][0])))
        for subset in subsets:
            f_mean, f_logvar = self.model.fuse({m: params[m] for m in subset}, method)
            selected = tf.equal(code, sum(bits[m] for m in subset))
            mean = tf.where(selected, f_mean, mean)
            logvar = tf.where(selected, f_logvar, logvar)
        return mean, logvar

    def fuse(self, method: str) -> GraphPlan:
        mods = self.model.modalities

        def fn(*args):
            params = {m: (args[2 * i], args[2 * i + 1]) for i, m in enumerate(mods)}
            mean, logvar = self._fuse_masked(params, args[-1], method)
            return {"mean": mean, "logvar": logvar}

        d = (self.layout.latent_dim,)
        inputs = [_spec(f"{p}_{m}", d) for m in mods for p in ("mean", "logvar")]
        inputs.append(_spec("mask", (len(mods),)))
        return GraphPlan(f"fuse_{method}", "fuse", fn, inputs,
                         {"method": method, "modalities": list(mods)})

    def translate(self, src: str, dst: str) -> GraphPlan:
        stochastic, styled = self.stochastic, bool(self.layout.style_dim)

        def fn(x, *rest):
            rest = list(rest)
            noise = rest.pop(0) if stochastic else None
            content = self.layout.content(self._sample(src, x, noise))
            z = self.layout.join(self._prior_style(rest.pop(0)), content) if styled else content
            return {"x_out": self.model.decode(dst, z, ema=self.ema), "z": z}
        return GraphPlan(f"translate_{src}_to_{dst}", "translate", fn,
                         [self._x(src)] + self._noise() + self._style("style_noise"),
                         {"source": src, "target": dst})

    def translate_subset(self, dst: str) -> GraphPlan:
        mods, styled = self.model.modalities, bool(self.layout.style_dim)
        method = self.model.default_fusion

        def fn(*args):
            args = list(args)
            xs, mask = args[:len(mods)], args[len(mods)]
            rest = args[len(mods) + 1:]
            params = {m: self.model.encode(m, x, ema=self.ema) for m, x in zip(mods, xs)}
            mean, logvar = self._fuse_masked(params, mask, method)
            content = latent_lib.reparameterize(mean, logvar, rest.pop(0), self.family)
            z = self.layout.join(self._prior_style(rest.pop(0)), content) if styled else content
            return {"x_out": self.model.decode(dst, z, ema=self.ema), "z": z}
        inputs = [_spec(f"x_{m}", self.shapes[m]) for m in mods]
        inputs += [_spec("mask", (len(mods),)), _spec("noise", (self.layout.content_dim,))]
        return GraphPlan(f"translate_subset_to_{dst}", "translate_subset", fn,
                         inputs + self._style("style_noise"),
                         {"target": dst, "method": method, "modalities": list(mods)})

    def reconstruct(self, m: str) -> GraphPlan:
        stochastic = self.stochastic

        def fn(x, *noise):
            z = self._sample(m, x, noise[0] if stochastic else None)
            return {"x_out": self.model.decode(m, z, ema=self.ema), "z": z}
        return GraphPlan(f"reconstruct_{m}", "reconstruct", fn, [self._x(m)] + self._noise(),
                         {"modality": m})

    def generate(self) -> GraphPlan:
        mods, styled = self.model.modalities, bool(self.layout.style_dim)

        def fn(content_noise, *style_noise):
            out = {}
            for i, m in enumerate(mods):
                noise = (self.layout.join(style_noise[i], content_noise) if styled
                         else content_noise)
                out[f"x_{m}"] = self.model.decode(m, self._prior_latent(noise), ema=self.ema)
            return out
        inputs = [_spec("content_noise", (self.layout.content_dim,))]
        for m in mods:
            inputs += self._style(f"style_noise_{m}")
        return GraphPlan("generate", "generate", fn, inputs, {"modalities": list(mods)})


def graph_plans(model: Any, weights: str = "ema") -> list[GraphPlan]:
    """Every graph of a bundle for `model` with `weights` ("ema" or "raw"), in file order."""
    _check_weights(model, weights)
    g = _Graphs(model, ema=weights == "ema")
    mods = model.modalities
    plans = [g.encoder(m) for m in mods] + [g.decoder(m) for m in mods]
    if g.stochastic:
        plans += [g.fuse(method) for method in latent_lib.FUSION_METHODS]
    plans += [g.translate(a, b) for a in mods for b in mods if a != b]
    if g.stochastic and len(mods) > 2:
        plans += [g.translate_subset(m) for m in mods]
    plans += [g.reconstruct(m) for m in mods] + [g.generate()]
    return plans


def _check_weights(model: Any, weights: str) -> None:
    if weights not in WEIGHTS:
        raise ValueError(f"weights={weights!r} is not one of {WEIGHTS}")
    if weights == "ema" and getattr(model, "ema", None) is None:
        raise ValueError("weights='ema' but this model has no EMA weights (trained with "
                         "--ema_decay=0); export with weights='raw'")


def _convert(plan: GraphPlan, opset: int) -> onnx.ModelProto:
    """tf2onnx conversion of one plan (module-level so tests can make an export fail)."""
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    proto, _ = tf2onnx.convert.from_function(plan.function(), input_signature=plan.inputs,
                                             opset=opset)
    return proto


def _io(values) -> list[dict[str, Any]]:
    out = []
    for v in values:
        dims = v.type.tensor_type.shape.dim
        dtype = onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name
        out.append({"name": v.name, "dtype": dtype,
                    "shape": [d.dim_param or d.dim_value for d in dims]})
    return out


def _finalize(proto: onnx.ModelProto, plan: GraphPlan, core: Mapping[str, Any]) -> dict[str, Any]:
    """Name the batch axis, embed the manifest, check the graph; return its manifest entry."""
    for value in list(proto.graph.input) + list(proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    entry = {"file": f"{plan.name}.onnx", "role": plan.role, **plan.info,
             "inputs": _io(proto.graph.input), "outputs": _io(proto.graph.output)}
    props = {p.key: p.value for p in proto.metadata_props}
    props.update(manifest_lib.metadata_props(core, entry))
    onnx.helper.set_model_props(proto, props)
    proto.doc_string = f"mmali_tf {plan.role} graph {plan.name} ({core['model']['name']})"
    proto.model_version = manifest_lib.FORMAT_VERSION
    onnx.checker.check_model(proto, full_check=True)
    return entry


def _core_manifest(model: Any, opset: int, weights: str, training_flags: Mapping[str, Any],
                   checkpoint_step: int | None, dataset: str | None) -> dict[str, Any]:
    deterministic = bool(model.deterministic)
    return {
        "format": manifest_lib.FORMAT,
        "format_version": manifest_lib.FORMAT_VERSION,
        "model": {"name": model.variant or type(model).__name__,
                  "class": type(model).__name__, "deterministic": deterministic,
                  "posterior_family": model.posterior_family,
                  "default_fusion": model.default_fusion, "prior_expert": bool(model.prior_expert)},
        "dataset": dataset,
        "modalities": [s.to_dict() for s in model.specs],
        "latent": model.layout.to_dict(),
        "noise": {"distribution": model.posterior_family, "loc": 0.0, "scale": 1.0},
        "fusion_methods": [] if deterministic else list(latent_lib.FUSION_METHODS),
        "external_data": shared_weights.WEIGHTS_FILE,
        "opset": opset,
        "weights": weights,
        "checkpoint_step": None if checkpoint_step is None else int(checkpoint_step),
        "training_flags": json.loads(json.dumps(dict(training_flags), default=str)),
        "conventions": manifest_lib.CONVENTIONS,
        "exporter": {"mmali_tf": mmali_tf.__version__, "tensorflow": tf.__version__,
                     "tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__},
    }


def check_export_args(model: Any, out_dir: str | os.PathLike, opset: int, weights: str,
                      overwrite: bool = False, graphs: Sequence[str] | None = None
                      ) -> list[GraphPlan]:
    """The plans `export_bundle` would export; one-line ValueError for arguments it rejects."""
    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise ValueError(f"opset={opset} is not supported; expected {MIN_OPSET}..{MAX_OPSET} "
                         f"(tf2onnx 1.17 stops at {MAX_OPSET})")
    if Path(out_dir).exists() and not overwrite:
        raise ValueError(f"bundle directory {str(out_dir)!r} already exists; choose another "
                         f"path or overwrite it explicitly")
    plans = graph_plans(model, weights)
    if graphs is not None:
        known = [p.name for p in plans]
        unknown = sorted(set(graphs) - set(known))
        if unknown or not graphs:
            raise ValueError(f"graphs={list(graphs)} must be a non-empty subset of {known}")
        plans = [p for p in plans if p.name in set(graphs)]
    return plans


def export_bundle(model: Any, out_dir: str | os.PathLike, opset: int = 17, weights: str = "ema",
                  training_flags: Mapping[str, Any] | None = None,
                  checkpoint_step: int | None = None, dataset: str | None = None,
                  overwrite: bool = False, graphs: Sequence[str] | None = None) -> dict[str, Any]:
    """Write the ONNX bundle of `model` to `out_dir`; returns the manifest written.

    Args:
      model: a built MultimodalModel.
      out_dir: bundle directory to create (must not exist unless `overwrite`).
      opset: ONNX opset, 14..18 (tf2onnx 1.17 stops at 18).
      weights: "ema" (the EMA networks, as used for evaluation) or "raw".
      training_flags: flags recorded in the manifest (default: `model.config`).
      checkpoint_step: training step of the exported weights, recorded in the manifest.
      dataset: dataset name recorded in the manifest.
      overwrite: replace an existing `out_dir` (atomically, only once the new bundle is complete).
      graphs: export only these graph names (e.g. ["translate_hand_to_print"]); default all.
    """
    plans = check_export_args(model, out_dir, opset, weights, overwrite, graphs)
    out = Path(out_dir)
    core = _core_manifest(model, int(opset), weights,
                          model.config if training_flags is None else training_flags,
                          checkpoint_step, dataset)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    tmp_digest = out.parent / f".{out.name}{manifest_lib.DIGEST_SUFFIX}.{uuid.uuid4().hex[:8]}"
    try:
        protos, entries = {}, {}
        for plan in plans:
            protos[plan.name] = _convert(plan, int(opset))
            entries[plan.name] = _finalize(protos[plan.name], plan, core)
        write_graphs(tmp, protos, entries)
        manifest = manifest_lib.write_manifest(tmp, {**core, "graphs": entries})
        publish(tmp, out, tmp_digest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp_digest.unlink(missing_ok=True)
        raise
    return manifest


def write_graphs(directory: Path, protos: Mapping[str, onnx.ModelProto],
                 entries: Mapping[str, Mapping[str, Any]]) -> None:
    """Write each graph to its manifest file with the shared initializers in `weights.bin`."""
    weights = shared_weights.share_initializers(protos.values())
    (directory / shared_weights.WEIGHTS_FILE).write_bytes(weights)
    for name, proto in protos.items():
        onnx.save(proto, str(directory / entries[name]["file"]))


def publish(tmp: Path, out: Path, tmp_digest: Path) -> None:
    """Move a complete bundle `tmp` to `out` and its digest file beside it."""
    tmp_digest.write_text(manifest_lib.digest_line(tmp, out.name))
    os.chmod(tmp, 0o755)
    _replace_dir(tmp, out)
    os.replace(tmp_digest, manifest_lib.digest_path(out))


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename `src` to `dst`, replacing an existing `dst` only after `src` is in place."""
    if not dst.exists():
        os.rename(src, dst)
        return
    old = dst.parent / f".{dst.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(dst, old)
    os.rename(src, dst)
    shutil.rmtree(old, ignore_errors=True)
