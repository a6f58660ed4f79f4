"""Helpers of the golden-fixture script (developer tool: needs torch, never imported by mmali_tf).

- `add_to_path` / `stub_modules`: import the authors' classes from an unmodified snapshot,
  stubbing modules that the training step never uses (data loading, plotting).
- `DrawRecorder`: records, in call order, every `torch.randn_like` / `torch.randperm` the
  authors' code makes, so the fixture can name each draw; `ReparameterizeRecorder` the draws
  of a reparameterisation function that samples with `Tensor.normal_`.
- `exact_singular_vectors`: sets every spectral-norm `u`, `v` to the exact top singular pair.
- `narrow_layers`: builds the authors' networks with smaller hidden widths (so that a fixture
  can store every entry of every tensor of a whole trajectory).
- `Fixture`: collects named arrays and metadata and writes `<case>.npz` + `<case>.json`.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import json
import os
import subprocess
import sys
import types

import numpy as np
import torch


def top_level_names(path: str) -> set[str]:
    """Module and package names at the root of snapshot `path`."""
    out = set()
    for entry in os.listdir(path):
        if entry.endswith(".py"):
            out.add(entry[:-3])
        elif os.path.isdir(os.path.join(path, entry)) and not entry.startswith((".", "__")):
            out.add(entry)
    return out


def forget_modules(names: set[str]) -> None:
    """Drop every cached module whose top-level name is in `names`."""
    for mod in list(sys.modules):
        if mod.split(".")[0] in names:
            del sys.modules[mod]


_SNAPSHOTS: list[str] = []


def add_to_path(path: str) -> None:
    """Make snapshot `path` the only snapshot on sys.path (first). Modules cached under one of
    its top-level names (`utils`, `models`, ... of another snapshot) are forgotten and the
    previous snapshots leave sys.path (a directory without `__init__.py` would otherwise lose
    to a same-named module of an earlier snapshot), so several snapshots import in one run."""
    path = os.path.abspath(path)
    if sys.path and sys.path[0] == path:
        return
    forget_modules(top_level_names(path))
    for old in _SNAPSHOTS + [path]:
        while old in sys.path:
            sys.path.remove(old)
    _SNAPSHOTS[:] = [path]
    sys.path.insert(0, path)


def stub_modules(names_attrs: dict[str, dict]) -> None:
    """Install empty modules `name` with the given attributes unless importable already (with
    a module spec: torch's optimizer import probes installed modules' specs)."""
    for name, attrs in names_attrs.items():
        mod = sys.modules.get(name) or types.ModuleType(name)
        for k, v in attrs.items():
            setattr(mod, k, v)
        if getattr(mod, "__spec__", None) is None:
            mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
        sys.modules[name] = mod


def repo_commit(path: str, fallback: str) -> str:
    """The snapshot's git commit, or `fallback` (the pinned commit) for an unpacked archive."""
    try:
        out = subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True,
                             text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return fallback


def nhwc(x: torch.Tensor) -> np.ndarray:
    """A torch NCHW image batch as an NHWC float32 array (vectors pass through)."""
    a = x.detach().cpu().numpy().astype(np.float32)
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


class DrawRecorder:
    """Context manager recording `torch.randn_like` and `torch.randperm` results in order."""

    def __init__(self) -> None:
        self.normals: list[np.ndarray] = []
        self.perms: list[np.ndarray] = []

    def __enter__(self):
        self._randn_like, self._randperm = torch.randn_like, torch.randperm
        rec = self

        def randn_like(t, *a, **k):
            out = rec._randn_like(t, *a, **k)
            rec.normals.append(out.detach().numpy().copy())
            return out

        def randperm(n, *a, **k):
            out = rec._randperm(n, *a, **k)
            rec.perms.append(out.numpy().astype(np.int32).copy())
            return out

        torch.randn_like, torch.randperm = randn_like, randperm
        return self

    def __exit__(self, *exc) -> None:
        torch.randn_like, torch.randperm = self._randn_like, self._randperm

    def take(self, names: list[str], kind: str = "normal") -> dict[str, np.ndarray]:
        """Name the next recorded draws of `kind` in order."""
        pool = self.normals if kind == "normal" else self.perms
        if len(pool) < len(names):
            raise RuntimeError(f"expected {len(names)} {kind} draws, recorded {len(pool)}")
        out = {n: pool.pop(0) for n in names}
        return out

    def check_empty(self) -> None:
        if self.normals or self.perms:
            raise RuntimeError(f"unnamed draws left: {len(self.normals)} normal, "
                               f"{len(self.perms)} permutations")


class ReparameterizeRecorder:
    """Wraps `owner.<attr>(mu, logvar)`, a reparameterisation that draws with
    `Tensor.normal_` (not `randn_like`), and records each call's standard-normal draw by
    re-drawing it from the saved RNG state (mmJSD's `utils.reparameterize`, MVAE's
    `MVAE.reparametrize`)."""

    def __init__(self, owner, attr: str = "reparameterize") -> None:
        self.owner, self.attr = owner, attr
        self.original, self.draws = getattr(owner, attr), []

    def __enter__(self):
        def recording(mu, logvar):
            state = torch.get_rng_state()
            out = self.original(mu=mu, logvar=logvar)
            after = torch.get_rng_state()
            torch.set_rng_state(state)
            self.draws.append(torch.empty(mu.shape).normal_().numpy().copy())
            torch.set_rng_state(after)
            return out
        setattr(self.owner, self.attr, recording)
        return self

    def __exit__(self, *exc) -> None:
        setattr(self.owner, self.attr, self.original)


# hidden width of the authors' mmALI networks (models/mnist.py, svhn.py, mnist_svhn.py,
# multimnist.py) -> its narrowed value: the SVHN convnets' channels (32, 64, 128) / 8, every
# other width / 32 (400 rounded up); the concatenations their constructors write as literals
# (512, 768, 1024 = 2, 3, 4 x 256) stay consistent (1024 is also a plain width: 32 either way)
NARROW = {32: 4, 64: 8, 128: 16, 256: 8, 400: 13, 512: 16, 768: 24, 1024: 32}


@contextlib.contextmanager
def narrow_layers(widths: dict[int, int]):
    """Within the context, `nn.Linear`, `nn.Conv1d`, `nn.Conv2d`, `nn.ConvTranspose1d`,
    `nn.ConvTranspose2d` and `nn.Embedding` built with an
    in/out size in `widths` get `widths[size]` instead (other sizes: data, latent and output
    dimensions, are kept). The authors' classes, forward code, layer order, kernel sizes and
    spectral norms are unchanged; only their width constants are smaller."""
    def size(n):
        return widths.get(n, n)

    originals = {}
    for cls in (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.ConvTranspose1d,
                torch.nn.ConvTranspose2d, torch.nn.Embedding):
        originals[cls] = cls.__init__

        def init(self, *args, __orig=originals[cls], **kwargs):
            # the two sizes come positionally or by keyword (in_/out_features, _channels)
            args = [size(a) if i < 2 else a for i, a in enumerate(args)]
            for key in ("in_features", "out_features", "in_channels", "out_channels",
                        "num_embeddings", "embedding_dim"):
                if key in kwargs:
                    kwargs[key] = size(kwargs[key])
            __orig(self, *args, **kwargs)
        cls.__init__ = init
    try:
        yield
    finally:
        for cls, orig in originals.items():
            cls.__init__ = orig


def spectral_norm_modules(module: torch.nn.Module):
    """(name, module) of every submodule carrying a spectral-norm `weight_u`."""
    return [(n, m) for n, m in module.named_modules() if hasattr(m, "weight_u")]


@torch.no_grad()
def exact_singular_vectors(module: torch.nn.Module) -> None:
    """Set each spectral-norm (u, v) to the exact top singular pair of its weight.

    Then one power iteration is a fixed point (up to float rounding), so the number of power
    iterations per update, which differs by design between the authors' code and ours, does
    not change sigma.
    """
    for _, m in spectral_norm_modules(module):
        w = m.weight_orig.detach().double()
        w = w.reshape(w.shape[0], -1)
        u, _, vh = torch.linalg.svd(w, full_matrices=False)
        m.weight_u.copy_(u[:, 0].float())
        m.weight_v.copy_(vh[0].float())


def sigmas(module: torch.nn.Module,
           aliases: tuple[str, ...] = ("generators.", "discriminators.")) -> dict[str, np.ndarray]:
    """sigma = u^T W v of every spectral-norm layer with its stored u, v (no iteration);
    modules also registered under an alias prefix are listed once."""
    out = {}
    for name, m in spectral_norm_modules(module):
        if name.startswith(aliases):
            continue
        w = m.weight_orig.detach().reshape(m.weight_orig.shape[0], -1)
        out[name] = np.float32(torch.dot(m.weight_u, w @ m.weight_v).item())
    return out


class Fixture:
    """Named float32/int32 arrays and JSON metadata of one golden case."""

    def __init__(self, case: str, meta: dict) -> None:
        self.case, self.meta, self.arrays = case, dict(meta), {}

    def add(self, prefix: str, values: dict) -> None:
        for k, v in values.items():
            if isinstance(v, torch.Tensor):
                v = v.detach().cpu().numpy()
            v = np.asarray(v)
            self.arrays[f"{prefix}{k}"] = v.astype(np.int32 if v.dtype.kind in "iu" else
                                                   np.float32)

    def add_state(self, prefix: str, module: torch.nn.Module) -> None:
        self.add(prefix, {k: v for k, v in module.state_dict().items()})

    def write(self, out_dir: str) -> str:
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, self.case)
        np.savez_compressed(path + ".npz", **self.arrays)
        with open(path + ".json", "w") as f:
            json.dump(self.meta, f, indent=1, sort_keys=True)
        return path + ".npz"
