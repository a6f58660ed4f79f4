"""Golden cases: training trajectories of the authors' MMVAE on MNIST-SVHN (iffsid/mmvae).

`MNIST_SVHN` built with their classes (hidden widths narrowed, `NARROW`), trained for
`ITERATIONS` iterations of their main.py loop body with `m_dreg_looser` and, from the same
weights, with `m_iwae_looser` (K=4), by their Adam(lr=1e-3, amsgrad=True) object. Records per
iteration the batch, the Laplace noise of each expert's K samples, the log-weights lw (M, K, B),
the objective and the loss, every weight and Adam slot (tools/golden/trajectory.py); the seed
is the first whose kink inputs keep the margin (tools/golden/kinks.py).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import types

import numpy as np
import torch
import torch.distributions as dist

from mmali_tf.reference import golden
from tools.golden import trajectory
from tools.golden.kinks import KinkRecorder, first_robust_seed
from tools.golden.torch_common import (Fixture, add_to_path, narrow_layers, nhwc,
                                       repo_commit, stub_modules)

MMVAE_COMMIT = "54398d75c144e9b6c06ef5c33a0ee9a162638b7d"
K, B, D = 4, 2, 20
MODS = ("mnist", "svhn")
CONFIG = dict(dataset="mnist_svhn", latent_dim=D, style_dim=0, init="torch",
              posterior="laplace", learn_prior=True, amsgrad=True, lr=1e-3, beta1=0.9,
              beta2=0.999, adam_epsilon=1e-8, num_importance_samples=K, ema_decay=0.0)
#: start weights: N(0, 0.05) kernels (zero biases, zero prior mean), see golden.seeded_weights
STDDEV = 0.05
BIAS_STDDEV = 0.01
ITERATIONS = 5
#: their hidden widths -> narrowed (torch_common.narrow_layers): MLP hidden 400 -> 4, SVHN
#: conv channels 32, 64, 128 -> 2, 4, 8, so the fixture stores every tensor of 5 iterations whole
NARROW = {400: 4, 32: 2, 64: 4, 128: 8}
OBJECTIVES = {"dreg": ("m_dreg_looser", "_m_dreg_looser"),
              "iwae": ("m_iwae_looser", "_m_iwae_looser")}


def load(src: str):
    """The authors' `objectives` module and `MNIST_SVHN` class from an unmodified src/."""
    add_to_path(src)
    stub_modules({"torchnet": {}, "torchnet.dataset": {"TensorDataset": object,
                                                       "ResampleDataset": object},
                  "torchvision": {"datasets": None, "transforms": None},
                  "torchvision.utils": {"save_image": None, "make_grid": None},
                  "vis": {"plot_embeddings": None, "plot_kls_df": None, "embed_umap": None,
                          "tensors_to_df": None},
                  "datasets": {"CUBImageFt": object}})
    objectives = importlib.import_module("objectives")
    pkg = types.ModuleType("models")
    pkg.__path__ = [src + "/models"]
    sys.modules["models"] = pkg
    from models.mmvae_mnist_svhn import MNIST_SVHN
    return objectives, MNIST_SVHN


def _record_rsample(log: list):
    original = dist.Laplace.rsample

    def rsample(self, sample_shape=torch.Size()):
        out = original(self, sample_shape)
        eps = (out.detach().double() - self.loc.detach().double()) / self.scale.detach().double()
        log.append(eps.float().numpy())
        return out
    return original, rsample


def binary_batch(shape, gen: torch.Generator) -> torch.Tensor:
    """Pixels 0 or 1: the Laplace likelihood's |x - mean| stays ~0.5 from its kink (a
    uniform batch puts some pixel within rounding of the decoder's mean)."""
    return (torch.rand(*shape, generator=gen) < 0.5).float()


def build(MNIST_SVHN, seed: int):
    """Their model with narrowed hidden widths (`NARROW`) and seeded start weights."""
    params = argparse.Namespace(latent_dim=D, num_hidden_layers=1, learn_prior=True,
                                llik_scaling=0.0, logp=False, K=K, looser=True, no_cuda=True,
                                device="cpu", batch_size=B)
    torch.manual_seed(seed)
    with narrow_layers(NARROW):
        model = MNIST_SVHN(params)
    # the prior mean and each unimodal VAE's own (unused) prior keep their zeros
    shapes = [(k, tuple(v.shape)) for k, v in model.state_dict().items()
              if "_pz_params" not in k or k == "_pz_params.1"]
    state = model.state_dict()
    with torch.no_grad():
        for k, v in golden.seeded_weights(shapes, seed, STDDEV, BIAS_STDDEV).items():
            state[k].copy_(torch.from_numpy(v))
    return model, shapes


def make(src: str, name: str, seed: int) -> tuple[Fixture, KinkRecorder]:
    """The `name` ("dreg" | "iwae") trajectory from seed `seed`."""
    objectives, MNIST_SVHN = load(src)
    fn, inner = OBJECTIVES[name]
    fn, inner_name = getattr(objectives, fn), inner
    model, shapes = build(MNIST_SVHN, seed)
    model.train()
    # main.py: their optimizer object, built as their script builds it
    opt = torch.optim.Adam(filter(lambda p: p.requires_grad, model.parameters()),
                           lr=1e-3, amsgrad=True)
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    settings = trajectory.adam_settings(opt)
    fx = Fixture(f"mmvae_mnist_svhn_{name}", dict(
        case=f"mmvae_mnist_svhn_{name}", repo="iffsid/mmvae",
        commit=repo_commit(src, MMVAE_COMMIT),
        files=["src/objectives.py (m_%s_looser)" % name, "src/models/mmvae.py",
               "src/models/mmvae_mnist_svhn.py", "src/models/vae_mnist.py",
               "src/models/vae_svhn.py", "src/main.py (train(): Adam(lr=1e-3, amsgrad=True), "
               "zero_grad, loss = -objective, backward, step)"],
        config=dict(CONFIG, model="mmvae", objective=name, lr=settings["lr"],
                    beta1=settings["betas"][0], beta2=settings["betas"][1],
                    adam_epsilon=settings["eps"], amsgrad=settings["amsgrad"]),
        seed=seed, stddev=STDDEV, bias_stddev=BIAS_STDDEV, narrow={str(k): v for k, v in NARROW.items()},
        weight_shapes=[[k, list(s)] for k, s in shapes],
        note=f"{ITERATIONS} iterations of main.py's train() loop body"))
    original_inner = getattr(objectives, inner_name)
    gen = torch.Generator().manual_seed(seed)

    def iteration(t):
        lws, noise = [], []

        def recording_inner(*a, **k):
            res = original_inner(*a, **k)
            lws.append((res[0] if isinstance(res, tuple) else res).detach())
            return res
        x = [binary_batch((B, 1, 28, 28), gen), binary_batch((B, 3, 32, 32), gen)]
        original_rsample, rsample = _record_rsample(noise)
        setattr(objectives, inner_name, recording_inner)
        dist.Laplace.rsample = rsample
        try:
            opt.zero_grad()
            loss = -fn(model, x, K=K)
            loss.backward()
            opt.step()
        finally:
            setattr(objectives, inner_name, original_inner)
            dist.Laplace.rsample = original_rsample
        assert len(lws) == 1 and len(noise) == 2, (len(lws), len(noise))
        # the looser IWAE bound of the step's log-weights (m_iwae_looser's reduction), which
        # our loss is the negative of for both objectives
        bound = objectives.log_mean_exp(lws[0], dim=1).mean(0).sum()
        terms = {"objective": -loss.item(), "loss": -bound.item()}
        draws = {"eps": np.stack(noise, axis=1)}  # (K, M, B, D)
        fx.add(f"it{t}/out/", {"lw": lws[0].numpy()})
        return {m: nhwc(v) for m, v in zip(MODS, x)}, draws, terms

    return trajectory.run_watched(fx, ITERATIONS, params, opt, iteration, model)


def make_all(src: str, seed: int = 0) -> list[Fixture]:
    out = []
    for name in OBJECTIVES:
        _, fx, _ = first_robust_seed(lambda s: make(src, name, s), seed)
        out.append(fx)
    return out
