"""Run an exported bundle with onnxruntime and numpy only (this module never imports TensorFlow).

    bundle = Bundle("bundle/")
    svhn_like = bundle.translate("hand", "print", x_hand, seed=0)      # (batch, 32, 32, 3)
    mean, logvar = bundle.encode("hand", x_hand)
    samples = bundle.generate(16, seed=0)                                # {modality: array}

`Bundle` checks the manifest's format version and every file's sha256 on open, creates one
onnxruntime session per graph lazily (thread-safe), validates inputs with one-line ValueErrors,
and draws the explicit noise inputs with numpy from the manifest's noise distribution. All the
math runs inside the exported graphs; this module only composes them.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import onnxruntime as ort

from export import manifest as manifest_lib

Params = tuple[np.ndarray, "np.ndarray | None"]
Seed = int | np.random.Generator | None


def session_options(threads: int = 1) -> ort.SessionOptions:
    """CPU options for small latency-bound graphs: few intra-op threads, no spinning."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


class Bundle:
    """An exported mmali_tf bundle ready for inference.

    Args:
      path: bundle directory written by `export.onnx_export.export_bundle`.
      threads: intra-op threads of every session (1 suits concurrent small requests).

    Attributes:
      manifest: the parsed manifest (see `export.manifest`).
      modalities: modality names in model order.
      specs: modality name -> its manifest entry (shape, dtype, value_range, kind, ...).
    """

    def __init__(self, path: str | os.PathLike, threads: int = 1) -> None:
        if int(threads) < 1:
            raise ValueError(f"threads={threads} must be >= 1")
        self.path = Path(path)
        self.manifest = manifest_lib.load_manifest(self.path, verify=True)
        self.specs = {s["name"]: s for s in self.manifest["modalities"]}
        self.modalities = tuple(self.specs)
        self.latent_dim = int(self.manifest["latent"]["latent_dim"])
        self.style_dim = int(self.manifest["latent"]["style_dim"])
        self.content_dim = int(self.manifest["latent"]["content_dim"])
        self.deterministic = bool(self.manifest["model"]["deterministic"])
        self.fusion_methods = tuple(self.manifest["fusion_methods"])
        self._threads = int(threads)
        self._sessions: dict[str, tuple[ort.InferenceSession, list[str]]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"Bundle({str(self.path)!r}, model={self.manifest['model']['name']!r}, "
                f"modalities={self.modalities})")

    # ------------------------------------------------------------------ sessions
    def session(self, graph: str) -> ort.InferenceSession:
        """The (lazily created, shared) onnxruntime session of manifest graph `graph`."""
        return self._session(graph)[0]

    def _session(self, graph: str) -> tuple[ort.InferenceSession, list[str]]:
        entry = self._sessions.get(graph)
        if entry is not None:
            return entry
        if graph not in self.manifest["graphs"]:
            raise ValueError(f"bundle has no graph {graph!r}; it has "
                             f"{sorted(self.manifest['graphs'])}")
        with self._lock:
            entry = self._sessions.get(graph)
            if entry is None:
                file = self.path / self.manifest["graphs"][graph]["file"]
                sess = ort.InferenceSession(str(file), sess_options=session_options(self._threads),
                                            providers=["CPUExecutionProvider"])
                entry = (sess, [o.name for o in sess.get_outputs()])
                self._sessions[graph] = entry
        return entry

    def run(self, graph: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one graph; returns its outputs by name (feeds are not validated here)."""
        sess, names = self._session(graph)
        return dict(zip(names, sess.run(names, feeds)))

    # ------------------------------------------------------------------ validation and noise
    def spec(self, modality: str, role: str = "modality") -> dict[str, Any]:
        """Manifest entry of `modality` (ValueError naming the bundle's modalities if unknown)."""
        if modality not in self.specs:
            raise ValueError(f"unknown {role} {modality!r}; this bundle has {self.modalities}")
        return self.specs[modality]

    @staticmethod
    def _array(name: str, x: Any, shape: tuple[int, ...],
               value_range: tuple[float, float] | None = None) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise ValueError(f"{name} must be a numpy array, got {type(x).__name__}")
        if x.dtype != np.float32:
            raise ValueError(f"{name} has dtype {x.dtype}; expected float32 "
                             f"(convert with .astype(np.float32))")
        if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
            raise ValueError(f"{name} has shape {tuple(x.shape)}; expected (batch, "
                             f"{', '.join(map(str, shape))})")
        if x.shape[0] == 0:
            raise ValueError(f"{name} has an empty batch; expected at least one example")
        low, high = x.min(), x.max()  # NaN and inf propagate into these
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ValueError(f"{name} contains NaN or inf values")
        if value_range is not None and (low < value_range[0] or high > value_range[1]):
            raise ValueError(f"{name} has values in [{low:.4g}, {high:.4g}] outside the "
                             f"modality's range [{value_range[0]:g}, {value_range[1]:g}]")
        return np.ascontiguousarray(x)

    def _x(self, modality: str, x: Any) -> np.ndarray:
        spec = self.spec(modality)
        return self._array(f"input for {modality!r}", x, tuple(spec["shape"]),
                           tuple(spec["value_range"]))

    def noise(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        """Standard noise of the manifest's distribution (Normal(0,1) or Laplace(0,1))."""
        if self.manifest["noise"]["distribution"] == "laplace":
            return rng.laplace(0.0, 1.0, size=shape).astype(np.float32)
        return rng.standard_normal(size=shape, dtype=np.float32)

    def _style_feeds(self, feeds: dict, name: str, n: int, rng: np.random.Generator) -> None:
        if self.style_dim:
            feeds[name] = self.noise((n, self.style_dim), rng)

    def _posterior_feeds(self, feeds: dict, n: int, rng: np.random.Generator, sample: bool):
        if not self.deterministic:
            feeds["noise"] = (self.noise((n, self.latent_dim), rng) if sample
                              else np.zeros((n, self.latent_dim), np.float32))

    # ------------------------------------------------------------------ inference
    def encode(self, modality: str, x: np.ndarray) -> Params:
        """Posterior (mean, logvar) of q(z | x); logvar is None for deterministic encoders."""
        out = self.run(f"encoder_{modality}", {"x": self._x(modality, x)})
        return out["mean"], out.get("logvar")

    def decode(self, modality: str, z: np.ndarray) -> np.ndarray:
        """Mean of p(x | z) for latents z of shape (batch, latent_dim)."""
        self.spec(modality)
        z = self._array("z", z, (self.latent_dim,))
        return self.run(f"decoder_{modality}", {"z": z})["x"]

    def fuse(self, params: Mapping[str, Params], method: str | None = None) -> Params:
        """Joint posterior (mean, logvar) over the content code of any subset of modalities.

        Args:
          params: modality -> (mean, logvar) as returned by `encode`, same batch for all.
          method: one of the manifest's `fusion_methods` (default: the model's own).
        """
        method = method or self.manifest["model"]["default_fusion"]
        if method not in self.fusion_methods:
            raise ValueError(f"unknown fusion method {method!r}; this bundle has "
                             f"{self.fusion_methods or 'none (deterministic encoders)'}")
        if not params:
            raise ValueError("fuse needs the posterior of at least one modality")
        feeds, n = {}, None
        for m, (mean, logvar) in params.items():
            self.spec(m)
            mean = self._array(f"mean of {m!r}", mean, (self.latent_dim,))
            logvar = self._array(f"logvar of {m!r}", logvar, (self.latent_dim,))
            if (n is not None and mean.shape[0] != n) or logvar.shape[0] != mean.shape[0]:
                raise ValueError(f"posterior of {m!r} has batch {mean.shape[0]}; every mean "
                                 f"and logvar must share one batch size")
            n = mean.shape[0]
            feeds[f"mean_{m}"], feeds[f"logvar_{m}"] = mean, logvar
        zeros = np.zeros((n, self.latent_dim), np.float32)
        for m in self.modalities:
            feeds.setdefault(f"mean_{m}", zeros)
            feeds.setdefault(f"logvar_{m}", zeros)
        mask = np.array([[m in params for m in self.modalities]], np.float32)
        feeds["mask"] = np.repeat(mask, n, axis=0)
        out = self.run(f"fuse_{method}", feeds)
        return out["mean"], out["logvar"]

    def translate(self, src: str, dst: str, x: np.ndarray, seed: Seed = None,
                  sample: bool = True) -> np.ndarray:
        """Cross-modal translation src -> dst in one graph call.

        Args:
          x: batch of the source modality (float32, in its value range).
          seed: seed of the posterior and style noise: an int, None (fresh randomness) or a
            `np.random.Generator` (used as is: fastest, but do not share one across threads).
          sample: sample the source posterior (False: use its mean). The target style is
            always drawn from the prior.
        """
        self.spec(src, "source modality")
        self.spec(dst, "target modality")
        if src == dst:
            raise ValueError(f"translate needs two different modalities, got {src!r} twice; "
                             f"use reconstruct({src!r}, x)")
        feeds = {"x": self._x(src, x)}
        rng = np.random.default_rng(seed)
        self._posterior_feeds(feeds, len(x), rng, sample)
        self._style_feeds(feeds, "style_noise", len(x), rng)
        return self.run(f"translate_{src}_to_{dst}", feeds)["x_out"]

    def translate_from(self, sources: Mapping[str, np.ndarray], dst: str, seed: Seed = None
                       ) -> np.ndarray:
        """Generate `dst` from any subset of the other modalities (same batch for all).

        With one source this is `translate`. Mixture models (default fusion `moe_mean`) draw
        from the mixture: each example is translated from one of its sources chosen uniformly
        (pairwise graphs); other models decode a sample of the default fusion of the sources
        (`translate_subset_to_<dst>` graph, bundles of M > 2 stochastic models).
        """
        self.spec(dst, "target modality")
        if not sources:
            raise ValueError("translate_from needs at least one source modality")
        if dst in sources:
            raise ValueError(f"target {dst!r} is also a source; pass only the other modalities")
        xs = {m: self._x(m, x) for m, x in sources.items()}
        n = {len(x) for x in xs.values()}
        if len(n) != 1:
            raise ValueError(f"sources have batch sizes {sorted(n)}; expected one batch size")
        n = n.pop()
        rng = np.random.default_rng(seed)
        if len(xs) == 1:
            (src, x), = xs.items()
            return self.translate(src, dst, x, seed=rng)
        if self.manifest["model"]["default_fusion"] == "moe_mean":
            names = list(xs)
            pick = rng.integers(0, len(names), size=n)
            out = np.empty((n, *self.spec(dst)["shape"]), np.float32)
            for k, src in enumerate(names):
                rows = np.flatnonzero(pick == k)
                if len(rows):
                    out[rows] = self.translate(src, dst, xs[src][rows], seed=rng)
            return out
        graph = f"translate_subset_to_{dst}"
        if graph not in self.manifest["graphs"]:
            raise ValueError(f"bundle has no {graph!r} graph (exported only for stochastic "
                             "models with more than two modalities)")
        feeds = {"mask": np.repeat(np.array([[m in xs for m in self.modalities]], np.float32),
                                   n, axis=0),
                 "noise": self.noise((n, self.content_dim), rng)}
        for m in self.modalities:
            feeds[f"x_{m}"] = xs.get(m, np.zeros((n, *self.spec(m)["shape"]), np.float32))
        self._style_feeds(feeds, "style_noise", n, rng)
        return self.run(graph, feeds)["x_out"]

    def reconstruct(self, modality: str, x: np.ndarray, seed: Seed = None,
                    sample: bool = True) -> np.ndarray:
        """Encode, sample (or take the mean with sample=False) and decode the same modality."""
        feeds = {"x": self._x(modality, x)}
        self._posterior_feeds(feeds, len(x), np.random.default_rng(seed), sample)
        return self.run(f"reconstruct_{modality}", feeds)["x_out"]

    def generate(self, n: int, seed: Seed = None) -> dict[str, np.ndarray]:
        """`n` joint samples from the prior: modality -> (n, *shape), sharing one content code."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"generate needs a positive integer number of samples, got {n!r}")
        rng = np.random.default_rng(seed)
        feeds = {"content_noise": self.noise((int(n), self.content_dim), rng)}
        for m in self.modalities:
            self._style_feeds(feeds, f"style_noise_{m}", int(n), rng)
        out = self.run("generate", feeds)
        return {m: out[f"x_{m}"] for m in self.modalities}
