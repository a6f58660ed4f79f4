"""Golden cases: one training step of the authors' mmJSD and mmJSD-MS (thomassutter/mmjsd).

Built with their `VAEtrimodalSVHNMNIST` (networks/VAEtrimodalSVHNMNIST.py) and their
divergence code (divergence_measures/), called with two modalities (`input_text=None`):
- `alpha_modalities = [1, 1, 1, 0]` so the JS weights of the bimodal call are the uniform
  1/(M+1) = 1/3 of the paper (their class reads `self.weights[0:3]` without renormalising);
- `*_mnist_pair`: the second modality uses their MNIST networks (`EncoderImg`/`DecoderImg`)
  in place of `EncoderSVHN`/`DecoderSVHN`, while their reconstruction weights stay what their
  class computes from the SVHN size (rec_w1 = 3072/784, rec_w2 = 1);
- `mmjsd_mnist_svhn`: MNIST and 32x32x3 SVHN with their own networks
  (networks/ConvNetworksImgSVHN.py, no output sigmoid: our `mmjsd_svhn` family).
The loss is composed exactly as `run_epoch` (training/training_svhnmnist.py, jsd branch)
composes it from their functions; Adam as in main_svhnmnist.py. Records every term the step
logs, the draws of `utils.reparameterize` (content, then each modality's style), every
gradient and every parameter after the step.
"""

from __future__ import annotations

import argparse
import importlib
import math

import numpy as np
import torch

from mmali_tf.reference import golden
from tools.golden.torch_common import (Fixture, ReparameterizeRecorder, add_to_path, nhwc,
                                       repo_commit, stub_modules)

MMJSD_COMMIT = "29d925d640f1899e87dc5e1c5540315307b56279"
B = 8
MODS = ("mnist", "svhn")
#: their keys of the two modalities' networks (the text networks are built but unused)
PREFIXES = ("encoder_mnist.", "encoder_svhn.", "decoder_mnist.", "decoder_svhn.")
STDDEV = 0.05
BETA, BETA_STYLE, BETA_CONTENT, LR = 5.0, 2.0, 1.0, 1e-3
#: case -> our model, latent sizes, and whether the second modality keeps their SVHN networks
SETUPS = {"mmjsd_mnist_pair": dict(model="mmjsd", latent_dim=20, style_dim=0, svhn=False),
          "mmjsd_ms_mnist_pair": dict(model="mmjsd_ms", latent_dim=20, style_dim=4, svhn=False),
          "mmjsd_mnist_svhn": dict(model="mmjsd", latent_dim=20, style_dim=0, svhn=True)}


#: modules their imports need that the training step never uses (plotting, metrics)
STUBS = {"torchvision": {}, "torchvision.utils": {"save_image": None, "make_grid": None},
         "torchvision.transforms": {"Compose": None, "ToTensor": None},
         "matplotlib": {}, "matplotlib.pyplot": {},
         "mpl_toolkits": {}, "mpl_toolkits.axes_grid1": {"ImageGrid": None},
         "sklearn": {}, "sklearn.metrics": {"confusion_matrix": None, "roc_curve": None,
                                            "auc": None},
         "sklearn.utils": {}, "sklearn.utils.multiclass": {"unique_labels": None}}


def load(snapshot: str):
    """Their `utils.utils`, `kl_div`, `loss` modules and the model/network classes."""
    add_to_path(snapshot)
    stub_modules(STUBS)
    importlib.import_module("torchvision").transforms = importlib.import_module(
        "torchvision.transforms")
    utils = importlib.import_module("utils.utils")
    kl_div = importlib.import_module("divergence_measures.kl_div")
    loss = importlib.import_module("utils.loss")
    vae = importlib.import_module("networks.VAEtrimodalSVHNMNIST")
    img = importlib.import_module("networks.ConvNetworksImgMNIST")
    return utils, kl_div, loss, vae, img


def flags_for(style_dim: int, class_dim: int) -> argparse.Namespace:
    return argparse.Namespace(
        device="cpu", cuda=False, batch_size=B, class_dim=class_dim,
        factorized_representation=style_dim > 0, style_mnist_dim=style_dim,
        style_svhn_dim=style_dim, style_text_dim=style_dim, num_hidden_layers=1,
        likelihood_m1="laplace", likelihood_m2="laplace", likelihood_m3="categorical",
        img_size_mnist=28, img_size_svhn=32, len_sequence=8, dim=8, num_features=71,
        alpha_modalities=[1.0, 1.0, 1.0, 0.0], modality_jsd=True, modality_moe=False,
        modality_poe=False, beta=BETA, beta_style=BETA_STYLE, beta_content=BETA_CONTENT,
        beta_m1_style=1.0, beta_m2_style=1.0, kl_annealing=0)


def our_draw(draws: list, style_dim: int) -> np.ndarray:
    """Our (M, B, D) `eps` from theirs: content draw on the rows each expert is selected for
    (their `mixture_component_selection`: contiguous halves), each modality's style draw."""
    content = draws[0]
    m = len(MODS)
    eps = np.zeros((m, B, style_dim + content.shape[1]), np.float32)
    chunk = B // m
    for i in range(m):
        rows = slice(i * chunk, B if i == m - 1 else (i + 1) * chunk)
        eps[i, rows, style_dim:] = content[rows]
        if style_dim:
            eps[i, :, :style_dim] = draws[1 + i]
    return eps


def make(snapshot: str, case: str, seed: int = 0) -> Fixture:
    utils, kl_div, loss_mod, vae, img = load(snapshot)
    setup = SETUPS[case]
    style = setup["style_dim"]
    class_dim = setup["latent_dim"] - style
    flags = flags_for(style, class_dim)
    torch.manual_seed(seed)
    model = vae.VAEtrimodalSVHNMNIST(flags)
    if not setup["svhn"]:
        model.encoder_svhn, model.decoder_svhn = img.EncoderImg(flags), img.DecoderImg(flags)
    shapes = [(k, tuple(v.shape)) for k, v in model.state_dict().items()
              if k.startswith(PREFIXES)]
    state = model.state_dict()
    with torch.no_grad():
        for k, v in golden.seeded_weights(shapes, seed, STDDEV).items():
            state[k].copy_(torch.from_numpy(v))
    x = [torch.rand(B, 1, 28, 28), torch.rand(B, 3, 32, 32) if setup["svhn"] else
         torch.rand(B, 1, 28, 28)]
    opt = torch.optim.Adam(list(model.parameters()), lr=LR, betas=(0.9, 0.999))
    model.train()
    with ReparameterizeRecorder(utils) as rec:
        res = model(input_mnist=x[0], input_svhn=x[1], input_text=None)
    if len(rec.draws) != (3 if style else 1):
        raise RuntimeError(f"expected {3 if style else 1} reparameterize draws, got "
                           f"{len(rec.draws)}")
    # run_epoch (training/training_svhnmnist.py), modality_jsd branch, text terms absent
    cdiv = kl_div.calc_kl_divergence
    lat = [res["latents"]["img_mnist"], res["latents"]["img_svhn"]]
    rec_err = [-loss_mod.log_prob_img(res["rec"][k], xi, B)
               for k, xi in zip(("img_mnist", "img_svhn"), x)]
    kld_class = [cdiv(l_[2], l_[3], norm_value=B) for l_ in lat]
    kld_style = [cdiv(l_[0], l_[1], norm_value=B) if style else torch.zeros(())
                 for l_ in lat]
    group_mu, group_logvar = res["group_distr"]
    dyn_mu, dyn_logvar = res["dyn_prior"]
    group_div = res["joint_divergence"]
    rec_weighted = model.rec_w1 * rec_err[0] + model.rec_w2 * rec_err[1]
    kld_style_sum = flags.beta_m1_style * kld_style[0] + flags.beta_m2_style * kld_style[1]
    total = 1.0 * rec_weighted + BETA * (BETA_STYLE * kld_style_sum + BETA_CONTENT * group_div)
    opt.zero_grad()
    total.backward()
    opt.step()
    terms = {"loss": total, "rec_M1": rec_err[0], "rec_M2": rec_err[1],
             "kld_content_M1": kld_class[0], "kld_content_M2": kld_class[1],
             "kld_style_M1": kld_style[0], "kld_style_M2": kld_style[1],
             "group_div": group_div, "kld_group": cdiv(group_mu, group_logvar, norm_value=B),
             "kld_dyn_prior": cdiv(dyn_mu, dyn_logvar, norm_value=B)}
    if not style:
        terms = {k: v for k, v in terms.items() if not k.startswith("kld_style")}
    params = {k: p for k, p in model.named_parameters() if k.startswith(PREFIXES)}
    grads = {k: p.grad.numpy() for k, p in params.items()}
    networks = (["networks/ConvNetworksImgMNIST.py (mnist)",
                 "networks/ConvNetworksImgSVHN.py (svhn)"] if setup["svhn"] else
                ["networks/ConvNetworksImgMNIST.py (both modalities)"])
    fx = Fixture(case, dict(
        case=case, repo="thomassutter/mmjsd",
        commit=repo_commit(snapshot, MMJSD_COMMIT),
        files=["networks/VAEtrimodalSVHNMNIST.py (forward, inference, divergence_jsd)",
               "divergence_measures/mm_div.py (calc_alphaJSD_modalities, alpha_poe)",
               "divergence_measures/kl_div.py", "utils/utils.py (reparameterize, "
               "mixture_component_selection)", "utils/loss.py (log_prob_img)",
               *networks,
               "training/training_svhnmnist.py (run_epoch: loss and logged terms)",
               "main_svhnmnist.py (Adam)"],
        config=dict(model=setup["model"], latent_dim=setup["latent_dim"], style_dim=style,
                    beta=BETA, beta_style=BETA_STYLE, beta_content=BETA_CONTENT, lr=LR,
                    beta1=0.9, beta2=0.999, adam_epsilon=1e-8, kl_anneal_steps=0,
                    init="torch", ema_decay=0.0),
        rec_weights=[float(model.rec_w1), float(model.rec_w2)], seed=seed, stddev=STDDEV,
        weight_shapes=[[k, list(s)] for k, s in shapes],
        note=("MNIST 28x28x1 and SVHN 32x32x3 with the authors' networks" if setup["svhn"]
              else "both modalities 28x28x1 with the authors' MNIST networks")
             + "; JS weights 1/3; "
             "loss = sum_m rec_w_m rec_m + beta (beta_style sum_m KL_style_m + "
             "beta_content JS); one Adam step"))
    if setup["svhn"]:
        fx.meta["svhn_network"] = "mmjsd_svhn"
    assert math.isclose(sum(float(w) for w in model.weights[:3]), 1.0, rel_tol=1e-6)
    fx.add("batch/", {m: nhwc(v) for m, v in zip(MODS, x)})
    fx.add("draw/", {"eps": our_draw(rec.draws, style)})
    fx.add("term/", {k: np.float32(v.item()) for k, v in terms.items()})
    fx.add("grad/", golden.summarise(grads))
    fx.add("after/", golden.summarise({k: p.detach().numpy() for k, p in params.items()}))
    return fx


def make_all(snapshot: str) -> list[Fixture]:
    return [make(snapshot, case) for case in SETUPS]
