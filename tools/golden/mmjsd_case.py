"""Golden cases: training trajectories of the authors' mmJSD and mmJSD-MS (thomassutter/mmjsd).

Built with their `VAEtrimodalSVHNMNIST` (networks/VAEtrimodalSVHNMNIST.py) and their
divergence code (divergence_measures/), called with two modalities (`input_text=None`):
- `alpha_modalities = [1, 1, 1, 0]` so the JS weights of the bimodal call are the uniform
  1/(M+1) = 1/3 of the paper (their class reads `self.weights[0:3]` without renormalising);
or with all three (`mmjsd_mnist_svhn_text`: MNIST, SVHN and their text modality with their
`networks/ConvNetworksTextMNIST.py`, `alpha_modalities = [1/4] * 4` as job_mst.sh, text
reconstruction weight 3072/8 and `log_prob_text`, both as `run_epoch` composes them; the batch
is one-hot (B, 8, 71), the layout their text encoder transposes to (B, 71, 8) and their
decoder's log-softmax transposes back from);
- `*_mnist_pair`: the second modality uses their MNIST networks (`EncoderImg`/`DecoderImg`)
  in place of `EncoderSVHN`/`DecoderSVHN`, while their reconstruction weights stay what their
  class computes from the SVHN size (rec_w1 = 3072/784, rec_w2 = 1);
- `mmjsd_mnist_svhn`: MNIST and 32x32x3 SVHN with their own networks
  (networks/ConvNetworksImgSVHN.py, no output sigmoid: our `mmjsd_svhn` family).
Hidden widths are narrowed (`NARROW`). Each of `ITERATIONS` iterations composes the loss
exactly as `run_epoch` (training/training_svhnmnist.py, jsd branch) composes it from their
functions, with its KL annealing `beta` executed from their source (`run_epoch_beta`), and
steps their Adam object as main_svhnmnist.py builds it. Records per iteration every term the
step logs, the draws of `utils.reparameterize` (content, then each modality's style), every
weight and Adam slot (tools/golden/trajectory.py); the seed is the first whose kink inputs keep
the margin (tools/golden/kinks.py).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import math
import os

import numpy as np
import torch

from mmali_tf.reference import golden
from tools.golden import trajectory
from tools.golden.kinks import KinkRecorder, first_robust_seed
from tools.golden.torch_common import (Fixture, ReparameterizeRecorder, add_to_path,
                                       narrow_layers, nhwc, repo_commit, stub_modules)

MMJSD_COMMIT = "29d925d640f1899e87dc5e1c5540315307b56279"
B = 4
ITERATIONS = 5
#: run_epoch's annealing: `kl_annealing` epochs of EPOCH_STEPS batches (their epoch loop over a
#: data set of EPOCH_STEPS * B pairs), so the trajectory sees epochs 0, 0, 1, 1, 2
ANNEAL_EPOCHS, EPOCH_STEPS = 2, 2
#: their hidden widths -> narrowed (torch_common.narrow_layers): MNIST MLP 400 -> 4, SVHN
#: channels 32, 64, 128 -> 2, 4, 8, so the fixture stores every tensor of the trajectory whole;
#: their text networks' --dim 64 -> 4 (flags: their `view(-1, 2*dim)` reads it), as our
#: `text_conv` DIM 64 -> 4
NARROW = {400: 4, 32: 2, 64: 4, 128: 8}
BIAS_STDDEV = 0.01
#: the bimodal cases' modalities; their keys of the two modalities' networks (the text
#: networks are built but unused there)
MODS = ("mnist", "svhn")
PREFIXES = ("encoder_mnist.", "encoder_svhn.", "decoder_mnist.", "decoder_svhn.")
TEXT_PREFIXES = ("encoder_text.", "decoder_text.")
#: their MNIST-SVHN-Text text modality (flags/flags_svhnmnist.py defaults): 8 characters
#: over the 71 of alphabet.json, text channels 2 * dim
LEN_SEQUENCE, NUM_FEATURES, TEXT_DIM = 8, 71, 64
STDDEV = 0.05
BETA, BETA_STYLE, BETA_CONTENT, LR = 5.0, 2.0, 1.0, 1e-3
#: case -> our model, latent sizes, and whether the second modality keeps their SVHN networks
SETUPS = {"mmjsd_mnist_pair": dict(model="mmjsd", latent_dim=20, style_dim=0, svhn=False),
          "mmjsd_ms_mnist_pair": dict(model="mmjsd_ms", latent_dim=20, style_dim=4, svhn=False),
          "mmjsd_mnist_svhn": dict(model="mmjsd", latent_dim=20, style_dim=0, svhn=True),
          "mmjsd_mnist_svhn_text": dict(model="mmjsd", latent_dim=20, style_dim=0, svhn=True,
                                        text=True)}


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


def flags_for(style_dim: int, class_dim: int, text: bool = False) -> argparse.Namespace:
    """Their flags for a case; with `text` all three modalities' JS weights are 1/4 (job_mst.sh)
    and the text networks have their default width (narrowed), else the bimodal weights and a
    small width for the unused text networks."""
    return argparse.Namespace(
        device="cpu", cuda=False, batch_size=B, class_dim=class_dim,
        factorized_representation=style_dim > 0, style_mnist_dim=style_dim,
        style_svhn_dim=style_dim, style_text_dim=style_dim, num_hidden_layers=1,
        likelihood_m1="laplace", likelihood_m2="laplace", likelihood_m3="categorical",
        img_size_mnist=28, img_size_svhn=32, len_sequence=LEN_SEQUENCE,
        dim=NARROW[TEXT_DIM] if text else 8, num_features=NUM_FEATURES,
        alpha_modalities=[0.25] * 4 if text else [1.0, 1.0, 1.0, 0.0], modality_jsd=True,
        modality_moe=False,
        modality_poe=False, beta=BETA, beta_style=BETA_STYLE, beta_content=BETA_CONTENT,
        beta_m1_style=1.0, beta_m2_style=1.0, beta_m3_style=1.0, kl_annealing=0)


def our_draw(draws: list, style_dim: int, m: int) -> np.ndarray:
    """Our (M, B, D) `eps` from theirs: content draw on the rows each of the `m` experts is
    selected for (their `mixture_component_selection`: contiguous blocks of B // m, the last
    one taking the rest), each modality's style draw."""
    content = draws[0]
    eps = np.zeros((m, B, style_dim + content.shape[1]), np.float32)
    chunk = B // m
    for i in range(m):
        rows = slice(i * chunk, B if i == m - 1 else (i + 1) * chunk)
        eps[i, rows, style_dim:] = content[rows]
        if style_dim:
            eps[i, :, :style_dim] = draws[1 + i]
    return eps


def run_epoch_beta(snapshot: str, flags: argparse.Namespace, epoch: int) -> float:
    """The KL weight `beta` of their `run_epoch` (training/training_svhnmnist.py) at `epoch`:
    its `if flags.kl_annealing > 0:` statement, taken from the file unmodified (ast) and
    executed as written (importing the module would need its plotting and metric imports)."""
    path = os.path.join(snapshot, "training", "training_svhnmnist.py")
    with open(path) as f:
        tree = ast.parse(f.read())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run_epoch")
    block = next(n for n in fn.body
                 if isinstance(n, ast.If) and "kl_annealing" in ast.unparse(n.test))
    scope = {"flags": flags, "epoch": epoch}
    exec(compile(ast.Module(body=[block], type_ignores=[]), path, "exec"), scope)
    return float(scope["beta"])


def batch_of(shape, gen: torch.Generator) -> torch.Tensor:
    """Pixels 0.25 or 0.75: the Laplace likelihood's |x - mean| stays far from its kink both
    for their MNIST decoder (sigmoid mean ~0.5) and their SVHN decoder (unbounded mean ~0)."""
    return 0.25 + 0.5 * (torch.rand(*shape, generator=gen) < 0.5).float()


def text_of(gen: torch.Generator) -> torch.Tensor:
    """(B, len_sequence, num_features) one-hot characters drawn uniformly (their dataset's
    layout: SVHNMNISTDataset one-hot encodes a string per row)."""
    codes = torch.randint(0, NUM_FEATURES, (B, LEN_SEQUENCE), generator=gen)
    return torch.nn.functional.one_hot(codes, NUM_FEATURES).float()


def make(snapshot: str, case: str, seed: int = 0) -> tuple[Fixture, KinkRecorder]:
    utils, kl_div, loss_mod, vae, img = load(snapshot)
    setup = SETUPS[case]
    style = setup["style_dim"]
    class_dim = setup["latent_dim"] - style
    text = setup.get("text", False)
    mods = MODS + ("text",) if text else MODS
    prefixes = PREFIXES + TEXT_PREFIXES if text else PREFIXES
    flags = flags_for(style, class_dim, text)
    torch.manual_seed(seed)
    with narrow_layers(NARROW):
        model = vae.VAEtrimodalSVHNMNIST(flags)
        if not setup["svhn"]:
            model.encoder_svhn, model.decoder_svhn = img.EncoderImg(flags), img.DecoderImg(flags)
    shapes = [(k, tuple(v.shape)) for k, v in model.state_dict().items()
              if k.startswith(prefixes)]
    state = model.state_dict()
    with torch.no_grad():
        for k, v in golden.seeded_weights(shapes, seed, STDDEV, BIAS_STDDEV).items():
            state[k].copy_(torch.from_numpy(v))
    # main_svhnmnist.py: Adam over every parameter (the unused text networks' too: they get
    # no gradient, so torch leaves them and their state alone)
    opt = torch.optim.Adam(list(model.parameters()), lr=LR, betas=(0.9, 0.999))
    params = {k: p for k, p in model.named_parameters() if k.startswith(prefixes)}
    settings = trajectory.adam_settings(opt)
    networks = (["networks/ConvNetworksImgMNIST.py (mnist)",
                 "networks/ConvNetworksImgSVHN.py (svhn)"] if setup["svhn"] else
                ["networks/ConvNetworksImgMNIST.py (both modalities)"])
    if text:
        networks += ["networks/ConvNetworksTextMNIST.py (text)", "utils/loss.py (log_prob_text)",
                     "utils/utils.py (get_likelihood: OneHotCategorical)"]
    fx = Fixture(case, dict(
        case=case, repo="thomassutter/mmjsd",
        commit=repo_commit(snapshot, MMJSD_COMMIT),
        files=["networks/VAEtrimodalSVHNMNIST.py (forward, inference, divergence_jsd)",
               "divergence_measures/mm_div.py (calc_alphaJSD_modalities, alpha_poe)",
               "divergence_measures/kl_div.py", "utils/utils.py (reparameterize, "
               "mixture_component_selection)", "utils/loss.py (log_prob_img)",
               *networks,
               "training/training_svhnmnist.py (run_epoch: KL annealing, loss and logged "
               "terms, zero_grad/backward/step)",
               "main_svhnmnist.py (Adam)"],
        config=dict(model=setup["model"], latent_dim=setup["latent_dim"], style_dim=style,
                    beta=BETA, beta_style=BETA_STYLE, beta_content=BETA_CONTENT,
                    lr=settings["lr"], beta1=settings["betas"][0], beta2=settings["betas"][1],
                    adam_epsilon=settings["eps"], amsgrad=settings["amsgrad"],
                    kl_anneal_steps=ANNEAL_EPOCHS * EPOCH_STEPS,
                    mmjsd_kl_epoch_steps=EPOCH_STEPS, init="torch", ema_decay=0.0),
        rec_weights=[float(w) for w in (model.rec_w1, model.rec_w2, model.rec_w3)[:len(mods)]],
        modalities=list(mods), seed=seed, stddev=STDDEV,
        bias_stddev=BIAS_STDDEV, narrow={str(k): v for k, v in NARROW.items()},
        kl_annealing_epochs=ANNEAL_EPOCHS, batches_per_epoch=EPOCH_STEPS,
        weight_shapes=[[k, list(s)] for k, s in shapes],
        note=("MNIST 28x28x1, SVHN 32x32x3 and text (8, 71) with the authors' networks"
              if text else "MNIST 28x28x1 and SVHN 32x32x3 with the authors' networks"
              if setup["svhn"] else "both modalities 28x28x1 with the authors' MNIST networks")
             + f" (hidden widths narrowed); JS weights 1/{len(mods) + 1}; {ITERATIONS} "
             "iterations of "
             f"run_epoch's loop body, {EPOCH_STEPS} per epoch, kl_annealing={ANNEAL_EPOCHS}: "
             "loss = sum_m rec_w_m rec_m + beta_epoch (beta_style sum_m KL_style_m + "
             "beta_content JS)"))
    if setup["svhn"]:
        fx.meta["svhn_network"] = "mmjsd_svhn"
    if text:
        fx.meta["text"] = dict(length=LEN_SEQUENCE, alphabet_size=NUM_FEATURES,
                               dim=NARROW[TEXT_DIM])
    assert math.isclose(sum(float(w) for w in model.weights[:len(mods) + 1]), 1.0,
                        rel_tol=1e-6)
    flags.kl_annealing = ANNEAL_EPOCHS
    gen = torch.Generator().manual_seed(seed)
    model.train()

    def iteration(t):
        epoch = (t - 1) // EPOCH_STEPS
        beta = run_epoch_beta(snapshot, flags, epoch)
        x = [batch_of((B, 1, 28, 28), gen), batch_of((B, 3, 32, 32), gen) if setup["svhn"]
             else batch_of((B, 1, 28, 28), gen)] + ([text_of(gen)] if text else [])
        with ReparameterizeRecorder(utils) as rec:
            res = model(input_mnist=x[0], input_svhn=x[1], input_text=x[2] if text else None)
        want_draws = 1 + len(mods) if style else 1
        if len(rec.draws) != want_draws:
            raise RuntimeError(f"expected {want_draws} reparameterize draws, got "
                               f"{len(rec.draws)}")
        # run_epoch (training/training_svhnmnist.py), modality_jsd branch (text terms absent
        # in the bimodal cases)
        cdiv = kl_div.calc_kl_divergence
        keys = ("img_mnist", "img_svhn", "text")[:len(mods)]
        lat = [res["latents"][k] for k in keys]
        rec_err = [-loss_mod.log_prob_img(res["rec"][k], xi, B) for k, xi in zip(keys[:2], x)]
        if text:
            rec_err.append(-loss_mod.log_prob_text(res["rec"]["text"], x[2], B))
        kld_class = [cdiv(l_[2], l_[3], norm_value=B) for l_ in lat]
        kld_style = [cdiv(l_[0], l_[1], norm_value=B) if style else torch.zeros(())
                     for l_ in lat]
        group_mu, group_logvar = res["group_distr"]
        dyn_mu, dyn_logvar = res["dyn_prior"]
        group_div = res["joint_divergence"]
        rec_w = (model.rec_w1, model.rec_w2, model.rec_w3)
        style_w = (flags.beta_m1_style, flags.beta_m2_style, flags.beta_m3_style)
        rec_weighted = sum(w * r for w, r in zip(rec_w, rec_err))
        kld_style_sum = sum(w * k for w, k in zip(style_w, kld_style))
        total = 1.0 * rec_weighted + beta * (BETA_STYLE * kld_style_sum + BETA_CONTENT * group_div)
        opt.zero_grad()
        total.backward()
        opt.step()
        terms = {"loss": total, **{f"rec_M{i + 1}": r for i, r in enumerate(rec_err)},
                 **{f"kld_content_M{i + 1}": k for i, k in enumerate(kld_class)},
                 **{f"kld_style_M{i + 1}": k for i, k in enumerate(kld_style)},
                 "group_div": group_div, "kld_group": cdiv(group_mu, group_logvar, norm_value=B),
                 "kld_dyn_prior": cdiv(dyn_mu, dyn_logvar, norm_value=B), "beta": beta}
        if not style:
            terms = {k: v for k, v in terms.items() if not k.startswith("kld_style")}
        terms = {k: float(v.item() if isinstance(v, torch.Tensor) else v)
                 for k, v in terms.items()}
        return ({m: nhwc(v) for m, v in zip(mods, x)},
                {"eps": our_draw(rec.draws, style, len(mods))}, terms)

    return trajectory.run_watched(fx, ITERATIONS, params, opt, iteration, model)


def make_all(snapshot: str, seed: int = 0) -> list[Fixture]:
    return [first_robust_seed(lambda s: make(snapshot, case, s), seed)[1] for case in SETUPS]
