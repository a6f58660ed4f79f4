"""Golden cases: training trajectories of the authors' MMVAE+ (epalu/mmvaeplus, src/).

Built with their `PolyMNIST_5modalities` (models/mmvae_polymnist.py: `MMVAE.forward` with the
auxiliary-prior cross styles of the `mmvaeplus` variant, prior Laplace(0, softmax * D)) and
their per-modality `PolyMNIST` VAEs with their own networks (models/vae_polymnist.py: the
ResNet `Enc` with one trunk for w and one for z, per-part softmax scales + eta, the ResNet
`Dec` with scale 0.75; Laplace posterior/likelihood, learned auxiliary prior `_pw_params`) =
our `mmvaeplus_resnet` family, trained for `ITERATIONS` iterations of main_polymnist.py's
`train()` loop body with `m_dreg` and, from the same weights, with `m_elbo` (objectives.py,
K = 4), by their Adam(lr=1e-3, amsgrad=True) object.

Reduced setting: the first M = 3 of their five VAEs (`model.vaes` truncated after
construction); their channel widths 64, 128, 256 narrowed to 1, 2, 3 (and the 256 x 7 x 7 =
12544 features to 3 x 7 x 7: `NARROW`, torch_common.narrow_layers; distinct widths stay
distinct, so every block keeps its kind of shortcut, identity or learned), so the fixture
stores every tensor of the trajectory whole (packed: one array per iteration and slot); their
classes and forward code unchanged. Records per iteration the batch (pixels 0.25 / 0.75, far
from the kink of |x - mean| for their unbounded decoder mean), every Laplace draw (each VAE's
K posterior samples, every r_d(w) cross-style sample), the log-weights lw (M, K, B), the
objective and the loss, every weight and Adam slot (m, v, vhat) (tools/golden/trajectory.py);
the seed is the first whose kink inputs keep the margin (tools/golden/kinks.py). The
full-size tensor shapes are recorded too. The released `m_dreg`'s gradient is the IWAE
gradient, so both cases train the same weights; they differ in the objective value.
"""

from __future__ import annotations

import argparse
import importlib

import numpy as np
import torch
import torch.distributions as dist

from mmali_tf.reference import golden
from tools.golden import trajectory
from tools.golden.kinks import KinkRecorder, first_robust_seed
from tools.golden.mmjsd_case import batch_of
from tools.golden.snapshot_import import isolated
from tools.golden.torch_common import Fixture, narrow_layers, nhwc, repo_commit

MMVAEPLUS_COMMIT = "d83dcf86c7d86e2c776610a561d437ceeaa6b5b3"
M, K, B = 3, 4, 2
DW, DZ = 2, 2
ITERATIONS = 5
#: their channel widths (nf * 2^i) and the flattened 7x7 features -> narrowed
NARROW = {64: 1, 128: 2, 256: 3, 256 * 7 * 7: 3 * 7 * 7}
MODS = tuple(f"m{i}" for i in range(M))
BETA = 2.5
#: start weights: N(0, 0.05) kernels, N(0, 0.01) biases (golden.seeded_weights)
STDDEV = 0.05
BIAS_STDDEV = 0.01
CONFIG = dict(model="mmvae_plus", latent_dim=DW + DZ, style_dim=DW, init="torch",
              posterior="laplace", learn_prior=False, num_importance_samples=K, beta=BETA,
              kl_anneal_steps=0, ema_decay=0.0)
OBJECTIVES = {"dreg": ("m_dreg", "_m_dreg"), "iwae": ("m_elbo", "_m_iwae")}

STUBS = {"torchvision": {"transforms": None}, "torchvision.utils": {"save_image": None,
                                                                   "make_grid": None},
         "torchvision.transforms": {}, "datasets_PolyMNIST": {"PolyMNISTDataset": object}}


def load(src: str):
    """Their `objectives` module and `PolyMNIST_5modalities` class from an unmodified src/."""
    isolated(src, STUBS)
    objectives = importlib.import_module("objectives")
    models = importlib.import_module("models")
    return objectives, models.VAE_polymnist_5modalities


class LaplaceRecorder:
    """Records the standard Laplace noise (x - loc) / scale of every `Laplace.rsample`."""

    def __init__(self) -> None:
        self.draws: list[np.ndarray] = []

    def __enter__(self):
        self.original = original = dist.Laplace.rsample
        draws = self.draws

        def rsample(d, sample_shape=torch.Size()):
            out = original(d, sample_shape)
            eps = (out.detach().double() - d.loc.detach().double()) / d.scale.detach().double()
            draws.append(eps.float().numpy())
            return out
        dist.Laplace.rsample = rsample
        return self

    def __exit__(self, *exc) -> None:
        dist.Laplace.rsample = self.original


def our_draws(draws: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Our named draws from theirs, in their call order: M posterior draws (K, B, D), then one
    r_d(w) draw (K, B, 1, DW) per (source e, target d != e), e outer."""
    if len(draws) != M + M * (M - 1):
        raise RuntimeError(f"expected {M + M * (M - 1)} Laplace draws, got {len(draws)}")
    out = {"eps": np.stack(draws[:M], axis=1)}                       # (K, M, B, D)
    aux = {d: np.zeros((M, K, B, DW), np.float32) for d in range(M)}
    pos = M
    for e in range(M):
        for d in range(M):
            if e != d:
                aux[d][e] = draws[pos].squeeze(2)
                pos += 1
    out.update({f"w_aux/{MODS[d]}": a for d, a in aux.items()})
    return out


def their_model(PolyMNIST5, widths: dict[int, int]):
    """Their model, the first M of its VAEs, built with widths through `widths` (layers by
    `narrow_layers`; the channel count `nf0` their `Enc` / `Dec.forward` view the 7x7 maps
    with, set in their constructors, through `widths` too)."""
    params = argparse.Namespace(latent_dim_w=DW, latent_dim_z=DZ, beta=BETA, K=K,
                                variant="mmvaeplus", no_cuda=True, tmpdir="/nonexistent",
                                batch_size=B)
    with narrow_layers(widths):
        model = PolyMNIST5(params)
    model.vaes = model.vaes[:M]
    for vae in model.vaes:
        for net in (vae.enc, vae.dec):
            net.nf0 = widths.get(net.nf0, net.nf0)
    return model


def trained_shapes(model) -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) of every tensor their optimizer trains."""
    return [(k, tuple(p.shape)) for k, p in model.named_parameters() if p.requires_grad]


def make(src: str, name: str, seed: int) -> tuple[Fixture, KinkRecorder]:
    """The `name` ("dreg" | "iwae") trajectory from seed `seed`."""
    objectives, PolyMNIST5 = load(src)
    fn_name, inner_name = OBJECTIVES[name]
    fn = getattr(objectives, fn_name)
    torch.manual_seed(seed)
    model = their_model(PolyMNIST5, NARROW)
    trained = {k: p for k, p in model.named_parameters() if p.requires_grad}
    shapes = trained_shapes(model)
    with torch.no_grad():
        for k, v in golden.seeded_weights(shapes, seed, STDDEV, BIAS_STDDEV).items():
            trained[k].copy_(torch.from_numpy(v))
    full_shapes = trained_shapes(their_model(PolyMNIST5, {}))
    model.train()
    # main_polymnist.py: their optimizer object, built as their script builds it
    opt = torch.optim.Adam(filter(lambda p: p.requires_grad, model.parameters()), lr=1e-3,
                           amsgrad=True)
    settings = trajectory.adam_settings(opt)
    fx = Fixture(f"mmvae_plus_m3_{name}", dict(
        case=f"mmvae_plus_m3_{name}", repo="epalu/mmvaeplus",
        commit=repo_commit(src, MMVAEPLUS_COMMIT),
        files=[f"src/objectives.py ({fn_name}, {inner_name})",
               "src/models/mmvae.py (forward, variant mmvaeplus)",
               "src/models/mmvae_polymnist.py (PolyMNIST_5modalities, pu_params)",
               "src/models/vae.py (forward)",
               "src/models/vae_polymnist.py (PolyMNIST, pw_params, ResnetBlock, Enc, Dec)",
               "src/utils.py (log_mean_exp, Constants.eta)",
               "src/main_polymnist.py (train(): Adam(lr=1e-3, amsgrad=True), zero_grad, "
               "loss = -objective, backward, step)"],
        config=dict(CONFIG, objective=name, lr=settings["lr"], beta1=settings["betas"][0],
                    beta2=settings["betas"][1], adam_epsilon=settings["eps"],
                    amsgrad=settings["amsgrad"]),
        modalities=list(MODS), shape=[28, 28, 3], network="mmvaeplus_resnet", seed=seed,
        stddev=STDDEV, bias_stddev=BIAS_STDDEV, narrow={str(k): v for k, v in NARROW.items()},
        weight_shapes=[[k, list(s)] for k, s in shapes], packed=[],
        full_weight_shapes=[[k, list(s)] for k, s in full_shapes],
        note=f"M = 3 of their PolyMNIST VAEs with their ResNets (channels narrowed); "
             f"{ITERATIONS} iterations of main_polymnist.py's train() loop body"))
    original_inner = getattr(objectives, inner_name)
    gen = torch.Generator().manual_seed(seed)

    def iteration(t):
        lws = []

        def recording_inner(*a, **k):
            res = original_inner(*a, **k)
            lws.append((res[0] if isinstance(res, tuple) else res).detach())
            return res
        x = [batch_of((B, 3, 28, 28), gen) for _ in MODS]
        setattr(objectives, inner_name, recording_inner)
        try:
            with LaplaceRecorder() as rec:
                opt.zero_grad()
                loss = -fn(model, x, K=K)
                loss.backward()
                opt.step()
        finally:
            setattr(objectives, inner_name, original_inner)
        assert len(lws) == 1, len(lws)
        # the looser IWAE bound of the step's log-weights (m_elbo's reduction), which our
        # loss is the negative of for both objectives
        bound = objectives.log_mean_exp(lws[0], dim=1).mean(0).sum()
        terms = {"objective": -loss.item(), "loss": -bound.item()}
        fx.add(f"it{t}/out/", {"lw": lws[0].numpy()})
        return {m: nhwc(v) for m, v in zip(MODS, x)}, our_draws(rec.draws), terms

    return trajectory.run_watched(fx, ITERATIONS, trained, opt, iteration, model, strict=True)


def make_all(src: str, seed: int = 0) -> list[Fixture]:
    """Both trajectories, each from the first seed whose kink inputs keep the margin."""
    return [first_robust_seed(lambda s: make(src, name, s), seed)[1] for name in OBJECTIVES]
