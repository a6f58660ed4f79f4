"""Golden cases: one training step of the authors' MMVAE on MNIST-SVHN (iffsid/mmvae).

`MNIST_SVHN` built with their classes, trained one step with `m_dreg_looser` and, from the same
weights, with `m_iwae_looser` (K=4), Adam(amsgrad) as in their main.py. Records the log-weights
lw (M, K, B) their objective computes, the objective value, every gradient and updated
parameter, and the Laplace noise of each expert's K samples.
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
from tools.golden.torch_common import Fixture, add_to_path, nhwc, repo_commit, stub_modules

MMVAE_COMMIT = "54398d75c144e9b6c06ef5c33a0ee9a162638b7d"
K, B, D = 4, 4, 20
MODS = ("mnist", "svhn")
CONFIG = dict(dataset="mnist_svhn", latent_dim=D, style_dim=0, init="torch",
              posterior="laplace", learn_prior=True, amsgrad=True, lr=1e-3, beta1=0.9,
              beta2=0.999, adam_epsilon=1e-8, num_importance_samples=K, ema_decay=0.0)
#: start weights: N(0, 0.05) kernels (zero biases, zero prior mean), see golden.seeded_weights
STDDEV = 0.05


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


def make_all(src: str, seed: int = 0) -> list[Fixture]:
    objectives, MNIST_SVHN = load(src)
    params = argparse.Namespace(latent_dim=D, num_hidden_layers=1, learn_prior=True,
                                llik_scaling=0.0, logp=False, K=K, looser=True, no_cuda=True,
                                device="cpu", batch_size=B)
    torch.manual_seed(seed)
    model = MNIST_SVHN(params)
    # the prior mean and each unimodal VAE's own (unused) prior keep their zeros
    shapes = [(k, tuple(v.shape)) for k, v in model.state_dict().items()
              if "_pz_params" not in k or k == "_pz_params.1"]
    start = golden.seeded_weights(shapes, seed, STDDEV)
    state = model.state_dict()
    with torch.no_grad():
        for k, v in start.items():
            state[k].copy_(torch.from_numpy(v))
    start_state = {k: v.clone() for k, v in model.state_dict().items()}
    x = [torch.rand(B, 1, 28, 28), torch.rand(B, 3, 32, 32)]
    out = []
    for name, fn, inner in (("dreg", objectives.m_dreg_looser, "_m_dreg_looser"),
                            ("iwae", objectives.m_iwae_looser, "_m_iwae_looser")):
        model.load_state_dict(start_state)
        model.zero_grad(set_to_none=True)
        model.train()
        opt = torch.optim.Adam(filter(lambda p: p.requires_grad, model.parameters()),
                               lr=CONFIG["lr"], amsgrad=True)
        lws, noise = [], []
        original_inner = getattr(objectives, inner)

        def recording_inner(*a, **k):
            res = original_inner(*a, **k)
            lws.append((res[0] if isinstance(res, tuple) else res).detach().numpy().copy())
            return res
        original_rsample, rsample = _record_rsample(noise)
        setattr(objectives, inner, recording_inner)
        dist.Laplace.rsample = rsample
        try:
            value = fn(model, x, K=K)
            opt.zero_grad()
            (-value).backward()
            opt.step()
        finally:
            setattr(objectives, inner, original_inner)
            dist.Laplace.rsample = original_rsample
        assert len(lws) == 1 and len(noise) == 2, (len(lws), len(noise))
        params_ = dict(model.named_parameters())
        grads = {k: p.grad.numpy() for k, p in params_.items() if p.grad is not None}
        fx = Fixture(f"mmvae_mnist_svhn_{name}", dict(
            case=f"mmvae_mnist_svhn_{name}", repo="iffsid/mmvae",
            commit=repo_commit(src, MMVAE_COMMIT),
            files=["src/objectives.py (m_%s_looser)" % name, "src/models/mmvae.py",
                   "src/models/mmvae_mnist_svhn.py", "src/models/vae_mnist.py",
                   "src/models/vae_svhn.py", "src/main.py (Adam, amsgrad, lr 1e-3)"],
            config=dict(CONFIG, model="mmvae", objective=name), seed=seed, stddev=STDDEV,
            weight_shapes=[[k, list(s)] for k, s in shapes],
            note="training step: loss = -objective(model, x, K); backward; Adam step"))
        fx.add("batch/", {m: nhwc(v) for m, v in zip(MODS, x)})
        fx.add("draw/", {"eps": np.stack(noise, axis=1)})  # (K, M, B, D)
        fx.add("out/", {"lw": lws[0], "objective": np.float32(value.item())})
        fx.add("grad/", golden.summarise(grads))
        fx.add("after/", golden.summarise({k: p.detach().numpy()
                                           for k, p in params_.items()}))
        out.append(fx)
    return out
