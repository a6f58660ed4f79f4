"""Golden case: training trajectories of the authors' MoPoE-VAE (thomassutter/MoPoE, joint_elbo).

Built with their generic `BaseMMVae` (through `mmnist/networks/VAEMMNIST.py`: subset PoEs in
`inference`, `poe_fusion` with the prior expert for the full set only, `moe_fusion` =
mixture component selection over the subsets, `divergence_static_prior`), the subsets of
`BaseExperiment.set_subsets` and the loss of `run_epochs.basic_routine_epoch` (joint_elbo
branch), called on a stand-in `exp` object; Adam as `MMNISTExperiment.set_optimizer`.

Two settings, both M = 3 modalities (7 subsets):
- `polymnist_m3`: 28x28x3 images with the authors' PolyMNIST networks (`mmnist/networks/
  ConvNetworksImgCMNIST.py`: stride-2 convnet, decoder without sigmoid, Laplace scale 0.75;
  modality class `modalities/CMNIST.py`) = our `polymnist_conv` family;
- `mnist_m3`: 28x28x1 images with their MNIST MLP networks (`mnistsvhntext/networks/
  ConvNetworksImgMNIST.py`, sigmoid mean; `modalities/MNIST.py`) = our `mnist_mlp` family,
  which the shipped `polymnist`/`polydigits` configs use.
Hidden widths narrowed (`NARROW`); `ITERATIONS` iterations of their `train` loop body. Records
per iteration the draw of `reparameterize` (the selected subset's sample), every logged term
(rec per modality, KL per subset, the joint divergence, the loss), every weight and Adam slot
(tools/golden/trajectory.py); the seed is the first whose kink inputs keep the margin.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import types

import numpy as np
import torch

from mmali_tf.reference import golden
from tools.golden import trajectory
from tools.golden.kinks import KinkRecorder, first_robust_seed
from tools.golden.mmjsd_case import STUBS as PLOTTING_STUBS
from tools.golden.mmjsd_case import batch_of
from tools.golden.snapshot_import import isolated
from tools.golden.torch_common import Fixture, narrow_layers, nhwc, repo_commit

MOPOE_COMMIT = "0ad2d564e0dc10704334f62ac2f45de57c56b2ab"
B, D = 4, 16
MODS = ("m0", "m1", "m2")
STDDEV = 0.05
BIAS_STDDEV = 0.01
ITERATIONS = 5
#: setup -> their hidden widths -> narrowed (`narrowed`), so the fixture stores every tensor of
#: the trajectory whole: PolyMNIST channels 32, 64, 128 -> 2, 4, 8 (and the 2048 = 128 x 4 x 4
#: features -> 128); MNIST MLP 400 -> 4
NARROW = {"polymnist_m3": {32: 2, 64: 4, 128: 8, 2048: 128}, "mnist_m3": {400: 4}}
#: their PolyMNIST job (job_polymnist): beta 2.5, lr 5e-4; beta_content 1.5 so that a
#: missing beta_content factor shows in the loss
BETA, BETA_CONTENT, LR = 2.5, 1.5, 5e-4

#: modules run_epochs / the modality classes import that one training step never uses
STUBS = {**PLOTTING_STUBS, "tensorboardX": {"SummaryWriter": None},
         "eval_metrics": {}, "eval_metrics.coherence": {"test_generation": None},
         "eval_metrics.representation": {"train_clf_lr_all_subsets": None,
                                         "test_clf_lr_all_subsets": None},
         "eval_metrics.sample_quality": {"calc_prd_score": None},
         "eval_metrics.likelihood": {"estimate_likelihoods": None},
         "plotting": {"generate_plots": None},
         "utils.TBLogger": {"TBLogger": None},
         "utils.save_samples": {"write_samples_img_to_file": None},
         "PIL": {"Image": None}}


#: setup -> (modality module and class, networks module, channels, network family of ours)
SETUPS = {"polymnist_m3": ("modalities.CMNIST", "CMNIST",
                           "mmnist.networks.ConvNetworksImgCMNIST", 3, "polymnist_conv"),
          "mnist_m3": ("modalities.MNIST", "MNIST",
                       "mnistsvhntext.networks.ConvNetworksImgMNIST", 1, "mnist_mlp")}


def load(snapshot: str, setup: str):
    """Their run_epochs, BaseExperiment, VAEMMNIST, the setup's modality class and networks."""
    isolated(snapshot, STUBS)
    importlib.import_module("torchvision").transforms = importlib.import_module(
        "torchvision.transforms")
    mod_module, mod_class, nets_module, _, _ = SETUPS[setup]
    run_epochs = importlib.import_module("run_epochs")
    experiment = importlib.import_module("utils.BaseExperiment")
    vae = importlib.import_module("mmnist.networks.VAEMMNIST")
    modality = getattr(importlib.import_module(mod_module), mod_class)
    nets = importlib.import_module(nets_module)
    return run_epochs, experiment, vae, modality, nets


def flags_for() -> argparse.Namespace:
    """mmnist/flags.py + main_mmnist.py post-processing, method joint_elbo, no style."""
    n = len(MODS)
    return argparse.Namespace(
        device=torch.device("cpu"), batch_size=B, class_dim=D, style_dim=0,
        factorized_representation=False, num_hidden_layers=1, likelihood="laplace",
        alpha_modalities=[1 / (n + 1)] * (n + 1), modality_jsd=False, modality_poe=False,
        modality_moe=False, joint_elbo=True, poe_unimodal_elbos=True, beta=BETA,
        beta_style=1.0, beta_content=BETA_CONTENT, initial_learning_rate=LR, beta_1=0.9,
        beta_2=0.999, kl_annealing=0)


class RecordingReparameterize:
    """Wraps the model's `reparameterize` (it calls `Tensor.normal_`) and records each draw."""

    def __init__(self, model) -> None:
        self.model, self.draws = model, []

    def __enter__(self):
        original = type(self.model).reparameterize

        def recording(model, mu, logvar):
            state = torch.get_rng_state()
            out = original(model, mu, logvar)
            after = torch.get_rng_state()
            torch.set_rng_state(state)
            self.draws.append(torch.empty(mu.shape).normal_().numpy().copy())
            torch.set_rng_state(after)
            return out
        self.model.reparameterize = types.MethodType(recording, self.model)
        return self

    def __exit__(self, *exc) -> None:
        del self.model.reparameterize


@contextlib.contextmanager
def narrowed(widths: dict[int, int]):
    """`narrow_layers(widths)`, and their `utils.utils.Unflatten` (the PolyMNIST decoder's
    literal (128, 4, 4)) with its channel count through `widths` too."""
    unflatten = importlib.import_module("utils.utils").Unflatten
    original = unflatten.__init__

    def init(self, ndims):
        original(self, (widths.get(ndims[0], ndims[0]), *ndims[1:]))
    unflatten.__init__ = init
    try:
        with narrow_layers(widths):
            yield
    finally:
        unflatten.__init__ = original


def make(snapshot: str, setup: str, seed: int = 0) -> tuple[Fixture, KinkRecorder]:
    run_epochs, experiment, vae, modality, nets = load(snapshot, setup)
    channels, family = SETUPS[setup][3:]
    flags = flags_for()
    torch.manual_seed(seed)
    with narrowed(NARROW[setup]):
        mods = {m: modality(m, nets.EncoderImg(flags), nets.DecoderImg(flags), D, 0, "laplace")
                for m in MODS}
    subsets = experiment.BaseExperiment.set_subsets(types.SimpleNamespace(modalities=mods))
    model = vae.VAEMMNIST(flags, mods, subsets)
    shapes = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    state = model.state_dict()
    with torch.no_grad():
        for k, v in golden.seeded_weights(shapes, seed, STDDEV, BIAS_STDDEV).items():
            state[k].copy_(torch.from_numpy(v))
    exp = types.SimpleNamespace(flags=flags, mm_vae=model, modalities=mods,
                                rec_weights={m: 1.0 for m in MODS},
                                style_weights={m: flags.beta_style for m in MODS})
    # MMNISTExperiment.set_optimizer
    opt = torch.optim.Adam(list(model.parameters()), lr=flags.initial_learning_rate,
                           betas=(flags.beta_1, flags.beta_2))
    settings = trajectory.adam_settings(opt)
    subset_keys = [k for k in subsets if k]
    params = dict(model.named_parameters())
    fx = Fixture(f"mopoe_{setup}", dict(
        case=f"mopoe_{setup}", repo="thomassutter/MoPoE",
        commit=repo_commit(snapshot, MOPOE_COMMIT),
        files=["utils/BaseMMVae.py (inference, poe_fusion, moe_fusion, "
               "divergence_static_prior, forward, reparameterize)",
               "mmnist/networks/VAEMMNIST.py", "utils/BaseExperiment.py (set_subsets)",
               "divergence_measures/mm_div.py (poe, calc_group_divergence_moe)",
               "divergence_measures/kl_div.py", "utils/utils.py (mixture_component_selection)",
               "modalities/Modality.py (calc_log_prob)", SETUPS[setup][0].replace(".", "/")
               + ".py", SETUPS[setup][2].replace(".", "/") + ".py (every modality)",
               "run_epochs.py (basic_routine_epoch, joint_elbo; train: zero_grad, backward, "
               "step)", "mmnist/experiment.py (set_optimizer, rec weights 1)"],
        config=dict(model="mopoe", latent_dim=D, style_dim=0, beta=BETA,
                    beta_content=BETA_CONTENT, lr=settings["lr"], beta1=settings["betas"][0],
                    beta2=settings["betas"][1], adam_epsilon=settings["eps"],
                    amsgrad=settings["amsgrad"], kl_anneal_steps=0, init="torch",
                    ema_decay=0.0),
        modalities=list(MODS), shape=[28, 28, channels], network=family,
        subsets=subset_keys, seed=seed, stddev=STDDEV, bias_stddev=BIAS_STDDEV,
        narrow={str(k): v for k, v in NARROW[setup].items()},
        weight_shapes=[[k, list(s)] for k, s in shapes],
        note=f"three 28x28x{channels} modalities with the authors' {SETUPS[setup][2]} "
             "networks (hidden widths narrowed); loss = sum_m rec_m + beta beta_content (1/7) "
             f"sum_S KL(q_S || N(0, I)); {ITERATIONS} iterations of run_epochs.train's loop "
             "body (their flags' kl_annealing is never read: no annealing)"))
    gen = torch.Generator().manual_seed(seed)
    model.train()

    def iteration(t):
        x = {m: batch_of((B, channels, 28, 28), gen) for m in MODS}
        with RecordingReparameterize(model) as rec:
            out = run_epochs.basic_routine_epoch(exp, (dict(x), None))
        if len(rec.draws) != 1:
            raise RuntimeError(f"expected one reparameterize draw, got {len(rec.draws)}")
        total = out["total_loss"]
        opt.zero_grad()
        total.backward()
        opt.step()
        terms = {"loss": total, "joint_divergence": out["results"]["joint_divergence"]}
        terms.update({f"rec_{m}": out["log_probs"][m] for m in MODS})
        terms.update({f"kl_{k}": out["klds"][k] for k in subset_keys})
        return ({m: nhwc(v) for m, v in x.items()}, {"eps": rec.draws[0]},
                {k: v.item() for k, v in terms.items()})

    return trajectory.run_watched(fx, ITERATIONS, params, opt, iteration, model)


def make_all(snapshot: str, seed: int = 0) -> list[Fixture]:
    return [first_robust_seed(lambda s: make(snapshot, setup, s), seed)[1] for setup in SETUPS]
