"""Run an exported bundle with onnxruntime and numpy only (this module never imports TensorFlow).

    bundle = Bundle("bundle/")
    svhn_like = bundle.translate("hand", "print", x_hand, seed=0)      # (batch, 32, 32, 3)
    mean, logvar = bundle.encode("hand", x_hand)
    samples = bundle.generate(16, seed=0)                                # {modality: array}

`Bundle` treats the bundle as untrusted input: on open it checks the manifest (optionally
pinned with `digest=`), the directory listing and every file's sha256 (`mmali_tf.export.bundle_files`);
it creates one onnxruntime session per graph lazily (thread-safe) from checked bytes (the
graph with the shared weights it refers to copied in), compares
each graph's real inputs and outputs with the manifest, bounds every size (`mmali_tf.export.limits`),
validates inputs, and draws the explicit noise inputs with numpy from the manifest's noise
distribution. Every refusal is a one-line `BundleError` (a ValueError). All the math runs
inside the exported graphs; this module only composes them.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping

import numpy as np
import onnxruntime as ort

from mmali_tf.export import bundle_files
from mmali_tf.export.errors import BundleError, first_line, show
from mmali_tf.export.limits import DEFAULT_LIMITS, Limits

Params = tuple[np.ndarray, "np.ndarray | None"]
Seed = int | np.random.Generator | None


MODES = ("latency", "throughput")
#: throughput mode splits a batch into slices of at least this many rows, one per worker.
MIN_SLICE_ROWS = 16


def physical_cores() -> int:
    """Physical CPU cores this process may use (logical CPUs when the topology is unknown)."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    logical = len(allowed) if allowed else (os.cpu_count() or 1)
    cores, cpu, package = set(), None, "0"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "processor":
                    cpu = int(value)
                elif key == "physical id":
                    package = value
                elif key == "core id" and (allowed is None or cpu in allowed):
                    cores.add((package, value))
    except (OSError, ValueError):
        return logical
    return max(1, min(len(cores) or logical, logical))


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
      path: bundle directory written by `mmali_tf.export.onnx_export.export_bundle`.
      threads: "latency" mode: intra-op threads of every session (default 1, which suits
        many concurrent small requests); "throughput" mode: workers that each run one slice
        of a batch on a single-thread session (default: the physical cores).
      mode: "latency" (default) or "throughput" (large batches, e.g. a server's batch of 256:
        the batch is split across `threads` workers and the outputs concatenated).
      digest: sha256 of the bundle's manifest.json (printed by the export and written beside
        the bundle as `<bundle>.sha256`); the bundle is refused unless it matches. Pin it for
        every bundle you did not build yourself.
      limits: upper bounds on declared sizes and on each call's batch (`mmali_tf.export.limits`).

    Raises:
      FileNotFoundError: `path` is not a directory or holds no manifest.json.
      BundleError: the bundle is refused (see `mmali_tf.export.bundle_files`).

    Attributes:
      manifest: the parsed manifest (see `mmali_tf.export.manifest`).
      modalities: modality names in model order.
      specs: modality name -> its manifest entry (shape, dtype, value_range, kind, ...).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None,
                 mode: str = "latency", *, digest: str | None = None,
                 limits: Limits = DEFAULT_LIMITS) -> None:
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is not one of {MODES}")
        if threads is None:
            threads = physical_cores() if mode == "throughput" else 1
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads={threads!r} must be a positive integer (or None)")
        self.limits = limits
        self.path, self.manifest = bundle_files.open_bundle(path, digest, limits)
        self.specs = {s["name"]: s for s in self.manifest["modalities"]}
        self.modalities = tuple(self.specs)
        self.latent_dim = int(self.manifest["latent"]["latent_dim"])
        self.style_dim = int(self.manifest["latent"]["style_dim"])
        self.content_dim = int(self.manifest["latent"]["content_dim"])
        self.deterministic = bool(self.manifest["model"]["deterministic"])
        self.fusion_methods = tuple(self.manifest["fusion_methods"])
        self.threads, self.mode = threads, mode
        self._workers = (ThreadPoolExecutor(threads, thread_name_prefix="mmali-bundle")
                         if mode == "throughput" and threads > 1 else None)
        self._sessions: dict[str, tuple[ort.InferenceSession, list[str]]] = {}
        self._inputs = {g: {i["name"]: tuple(i["shape"][1:]) for i in entry["inputs"]}
                        for g, entry in self.manifest["graphs"].items()}
        self._lock = threading.Lock()
        self._shared: bytes | None = None  # the checked external_data file, read on first use

    def __repr__(self) -> str:
        return (f"Bundle({str(self.path)!r}, model={self.manifest['model']['name']!r}, "
                f"modalities={self.modalities})")

    # ------------------------------------------------------------------ sessions
    def session(self, graph: str) -> ort.InferenceSession:
        """The (lazily created, shared) onnxruntime session of manifest graph `graph`."""
        return self._session(graph)[0]

    def _session(self, graph: str) -> tuple[ort.InferenceSession, list[str]]:
        if not isinstance(graph, str) or graph not in self.manifest["graphs"]:
            raise BundleError(f"bundle has no graph {show(graph)}; it has "
                              f"{sorted(self.manifest['graphs'])}")
        entry = self._sessions.get(graph)
        if entry is not None:
            return entry
        with self._lock:
            entry = self._sessions.get(graph)
            if entry is None:
                opts = session_options(1 if self._workers else self.threads)
                if self._shared is None:
                    self._shared = bundle_files.read_external_data(self.path, self.manifest,
                                                                   self.limits)
                sess = bundle_files.load_session(self.path, graph, self.manifest, opts,
                                                 self.limits, external=self._shared)
                entry = (sess, [o.name for o in sess.get_outputs()])
                self._sessions[graph] = entry
        return entry

    def run(self, graph: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one graph; returns its outputs by name.

        Feeds must be exactly the graph's inputs: float32 arrays of the declared shapes with
        one batch size (their values are not checked here).
        """
        self._session(graph)
        inputs = self._inputs[graph]
        if not isinstance(feeds, Mapping) or set(feeds) != set(inputs):
            got = sorted(map(str, feeds)) if isinstance(feeds, Mapping) else feeds
            raise BundleError(f"graph {graph!r} takes inputs {sorted(inputs)}; got {show(got)}")
        batches = {self._checked(f"input {k!r} of {graph!r}", feeds[k], shape).shape[0]
                   for k, shape in inputs.items()}
        if len(batches) > 1:
            raise BundleError(f"inputs of graph {graph!r} have batch sizes {sorted(batches)}; "
                              f"expected one batch size")
        return self._run(graph, dict(feeds))

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`run` for feeds built by this class from validated inputs."""
        sess, names = self._session(graph)
        rows = len(next(iter(feeds.values())))
        slices = min(self.threads, rows // MIN_SLICE_ROWS) if self._workers else 1
        try:
            if slices < 2:
                return dict(zip(names, sess.run(names, feeds)))
            bounds = np.linspace(0, rows, slices + 1).astype(int)
            parts = list(self._workers.map(
                lambda lo, hi: sess.run(names, {k: v[lo:hi] for k, v in feeds.items()}),
                bounds[:-1], bounds[1:]))
        except bundle_files.ORT_ERRORS as error:
            raise BundleError(f"bundle graph {graph!r} failed: {first_line(error)}") from None
        return {name: np.concatenate(outs) for name, outs in zip(names, zip(*parts))}

    # ------------------------------------------------------------------ validation and noise
    def spec(self, modality: str, role: str = "modality") -> dict[str, Any]:
        """Manifest entry of `modality` (BundleError naming the bundle's modalities if unknown)."""
        if not isinstance(modality, str) or modality not in self.specs:
            raise BundleError(f"unknown {role} {show(modality)}; this bundle has "
                              f"{self.modalities}")
        return self.specs[modality]

    def _checked(self, name: str, x: Any, shape: tuple[int, ...]) -> np.ndarray:
        """`x` as a float32 array of shape (batch, *shape) within `limits` (values unchecked)."""
        if not isinstance(x, np.ndarray):
            raise BundleError(f"{name} must be a numpy array, got {type(x).__name__}")
        if x.dtype != np.float32:
            raise BundleError(f"{name} has dtype {str(x.dtype)[:60]}; expected float32 "
                              f"(convert with .astype(np.float32))")
        if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
            raise BundleError(f"{name} has shape {show(x.shape)}; expected (batch, "
                              f"{', '.join(map(str, shape))})")
        if x.shape[0] == 0:
            raise BundleError(f"{name} has an empty batch; expected at least one example")
        self._check_batch(x.shape[0], shape)
        return x

    def _array(self, name: str, x: Any, shape: tuple[int, ...],
               value_range: tuple[float, float] | None = None) -> np.ndarray:
        x = self._checked(name, x, shape)
        low, high = x.min(), x.max()  # NaN and inf propagate into these
        if not (np.isfinite(low) and np.isfinite(high)):
            raise BundleError(f"{name} contains NaN or inf values")
        if value_range is not None and (low < value_range[0] or high > value_range[1]):
            raise BundleError(f"{name} has values in [{low:.4g}, {high:.4g}] outside the "
                              f"modality's range [{value_range[0]:g}, {value_range[1]:g}]")
        return np.ascontiguousarray(x)

    def _check_batch(self, n: int, *shapes: tuple[int, ...]) -> None:
        """A batch of `n` examples of each shape (inputs, outputs, latents) within `limits`."""
        if n > self.limits.batch:
            raise BundleError(f"batch of {n} examples exceeds the limit of {self.limits.batch} "
                              f"(Limits.batch); split it")
        for shape in (*shapes, (self.latent_dim,)):
            if n * math.prod(shape) > self.limits.batch_elements:
                raise BundleError(f"batch of {n} x {tuple(shape)} exceeds the limit of "
                                  f"{self.limits.batch_elements} values per array "
                                  f"(Limits.batch_elements); split it")

    def _rng(self, seed: Seed) -> np.random.Generator:
        if isinstance(seed, np.random.Generator):
            return seed
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                                 or seed < 0):
            raise BundleError(f"seed={show(seed)} must be a non-negative integer, None or a "
                              f"numpy Generator")
        return np.random.default_rng(seed)

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
        out = self._run(f"encoder_{modality}", {"x": self._x(modality, x)})
        return out["mean"], out.get("logvar")

    def decode(self, modality: str, z: np.ndarray) -> np.ndarray:
        """Mean of p(x | z) for latents z of shape (batch, latent_dim)."""
        z = self._array("z", z, (self.latent_dim,))
        self._check_batch(len(z), tuple(self.spec(modality)["shape"]))
        return self._run(f"decoder_{modality}", {"z": z})["x"]

    def fuse(self, params: Mapping[str, Params], method: str | None = None) -> Params:
        """Joint posterior (mean, logvar) over the content code of any subset of modalities.

        Args:
          params: modality -> (mean, logvar) as returned by `encode`, same batch for all.
          method: one of the manifest's `fusion_methods` (default: the model's own).
        """
        method = self.manifest["model"]["default_fusion"] if method is None else method
        if not isinstance(method, str) or method not in self.fusion_methods:
            raise BundleError(f"unknown fusion method {show(method)}; this bundle has "
                              f"{self.fusion_methods or 'none (deterministic encoders)'}")
        if not isinstance(params, Mapping) or not params:
            raise BundleError(f"fuse needs the posterior of at least one modality as a mapping "
                              f"modality -> (mean, logvar); got {show(params)}")
        feeds, n = {}, None
        for m, pair in params.items():
            self.spec(m)
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise BundleError(f"posterior of {m!r} must be a (mean, logvar) pair, got "
                                  f"{type(pair).__name__}")
            mean = self._array(f"mean of {m!r}", pair[0], (self.latent_dim,))
            logvar = self._array(f"logvar of {m!r}", pair[1], (self.latent_dim,))
            if (n is not None and mean.shape[0] != n) or logvar.shape[0] != mean.shape[0]:
                raise BundleError(f"posterior of {m!r} has batch {mean.shape[0]}; every mean "
                                  f"and logvar must share one batch size")
            n = mean.shape[0]
            feeds[f"mean_{m}"], feeds[f"logvar_{m}"] = mean, logvar
        zeros = np.zeros((n, self.latent_dim), np.float32)
        for m in self.modalities:
            feeds.setdefault(f"mean_{m}", zeros)
            feeds.setdefault(f"logvar_{m}", zeros)
        mask = np.array([[m in params for m in self.modalities]], np.float32)
        feeds["mask"] = np.repeat(mask, n, axis=0)
        out = self._run(f"fuse_{method}", feeds)
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
            raise BundleError(f"translate needs two different modalities, got {src!r} twice; "
                              f"use reconstruct({src!r}, x)")
        feeds = {"x": self._x(src, x)}
        self._check_batch(len(x), tuple(self.specs[dst]["shape"]))
        rng = self._rng(seed)
        self._posterior_feeds(feeds, len(x), rng, sample)
        self._style_feeds(feeds, "style_noise", len(x), rng)
        return self._run(f"translate_{src}_to_{dst}", feeds)["x_out"]

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
        self._posterior_feeds(feeds, len(x), self._rng(seed), sample)
        return self._run(f"reconstruct_{modality}", feeds)["x_out"]

    def generate(self, n: int, seed: Seed = None) -> dict[str, np.ndarray]:
        """`n` joint samples from the prior: modality -> (n, *shape), sharing one content code."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise BundleError(f"generate needs a positive integer number of samples, got "
                              f"{show(n)}")
        self._check_batch(int(n), *(tuple(s["shape"]) for s in self.specs.values()))
        rng = self._rng(seed)
        feeds = {"content_noise": self.noise((int(n), self.content_dim), rng)}
        for m in self.modalities:
            self._style_feeds(feeds, f"style_noise_{m}", int(n), rng)
        out = self._run("generate", feeds)
        return {m: out[f"x_{m}"] for m in self.modalities}
