"""Golden case: a training trajectory of the authors' MVAE on MNIST image + digit label
(mhw32/multimodal-vae-public, mnist/).

Built with their `MVAE` (mnist/model.py: Swish MLPs, `ProductOfExperts` with the N(0, I)
`prior_expert`, `reparametrize`; hidden widths narrowed, `NARROW`) and trained `ITERATIONS` iterations as
`train()` in their mnist/train.py does: the joint, image-only and label-only forward passes,
`elbo_loss` of each (their `binary_cross_entropy_with_logits` and `cross_entropy`) with
lambda_image 1, lambda_text 10 (their defaults) and the KL annealing factor of their loop, the
sum of the three, and a step of their `optim.Adam` (lr 1e-3). Records per iteration every draw
of `reparametrize` (joint, image, label, in call order), the three ELBOs and their
reconstruction/KL parts (their `elbo_loss` called with the other weights at 0), every weight
and Adam slot (tools/golden/trajectory.py); plus their two
likelihood functions on fixed logits up to saturation, their loop's annealing factor over
three epochs, and their decoders' outputs on fixed z at the starting weights (`decoded/`, for
the import round trip; the same weights are written with their `save_checkpoint` under
/tmp/mvae_golden/).
"""

from __future__ import annotations

import importlib
import os
import sys

import numpy as np
import torch

from mmali_tf.reference import golden
from tools.golden import trajectory
from tools.golden.kinks import KinkRecorder, first_robust_seed
from tools.golden.torch_common import (Fixture, ReparameterizeRecorder, add_to_path,
                                       narrow_layers, nhwc, repo_commit, stub_modules)

MVAE_COMMIT = "2a358eb3593e9942e0846eb0095519acef462fa6"
B, D, CLASSES = 4, 64, 10
STDDEV = 0.05
BIAS_STDDEV = 0.01
ITERATIONS = 5
#: their hidden width 512 (MLPs, label embedding) -> 4, so the fixture stores every tensor of
#: the trajectory whole
NARROW = {512: 4}
LAMBDA_IMAGE, LAMBDA_TEXT, LR = 1.0, 10.0, 1e-3
#: their loop's KL annealing factor (batch_idx + (epoch - 1) N + 1) / (annealing_epochs N) while
#: epoch < annealing_epochs, else 1, with N = 2 batches per epoch and 2 annealing epochs: 1/4,
#: 1/2, then 1 (our kl_anneal_steps = 4 with mvae_kl_full_step = 4 - 2)
N_MINI_BATCHES, ANNEALING_EPOCHS = 2, 2
ANNEAL_STEPS = ANNEALING_EPOCHS * N_MINI_BATCHES
CONFIG = dict(model="mvae", latent_dim=D, style_dim=0, beta=1.0, kl_anneal_steps=ANNEAL_STEPS,
              mvae_kl_full_step=ANNEAL_STEPS - N_MINI_BATCHES, init="torch", ema_decay=0.0)
STUBS = {"torchvision": {}, "torchvision.transforms": {"ToTensor": None},
         "torchvision.datasets": {"MNIST": None}}


def load(snapshot: str):
    """Their mnist/model.py and mnist/train.py modules from an unmodified snapshot."""
    add_to_path(os.path.join(snapshot, "mnist"))
    stub_modules(STUBS)
    importlib.import_module("torchvision").transforms = sys.modules["torchvision.transforms"]
    for name in ("model", "train"):      # generic names: never reuse another snapshot's module
        sys.modules.pop(name, None)
    return importlib.import_module("model"), importlib.import_module("train")


def annealing_factor(epoch: int, batch_idx: int) -> float:
    """Their train()'s KL annealing factor. It lives in train.py's `__main__` block, which
    cannot be imported, so it is evaluated here as written there: linear in the global batch
    index while `epoch < annealing_epochs`, else 1 (so the last warm-up epoch is already 1)."""
    if epoch < ANNEALING_EPOCHS:
        return (float(batch_idx + (epoch - 1) * N_MINI_BATCHES + 1) /
                float(ANNEALING_EPOCHS * N_MINI_BATCHES))
    return 1.0


def annealing_schedule(epochs: int = ANNEALING_EPOCHS + 1) -> np.ndarray:
    """Their factor at 0-based steps 0 .. epochs * N - 1."""
    return np.array([annealing_factor(e, b) for e in range(1, epochs + 1)
                     for b in range(N_MINI_BATCHES)], np.float32)


def likelihood_probes(train) -> dict[str, np.ndarray]:
    """Their per-entry BCE-with-logits and cross-entropy on logits up to +-40 (saturated)."""
    rng = np.random.default_rng(1)
    logits = np.concatenate([np.linspace(-40.0, 40.0, 81), rng.normal(0, 3, 47)]).astype(
        np.float32).reshape(8, 16)
    target = rng.uniform(0.0, 1.0, logits.shape).astype(np.float32)
    target[:, :4] = np.round(target[:, :4])
    cat_logits = (rng.normal(0, 1, (B, CLASSES)) * np.geomspace(1, 60, B)[:, None]).astype(
        np.float32)
    cat_target = rng.integers(0, CLASSES, B)
    bce = train.binary_cross_entropy_with_logits(torch.from_numpy(logits),
                                                 torch.from_numpy(target))
    ce = train.cross_entropy(torch.from_numpy(cat_logits), torch.from_numpy(cat_target))
    return {"bernoulli_logits": logits, "bernoulli_target": target,
            "bernoulli_nll": bce.numpy(), "categorical_logits": cat_logits,
            "categorical_target": np.eye(CLASSES, dtype=np.float32)[cat_target],
            "categorical_nll": ce.numpy()}


@torch.no_grad()
def decoded(model, seed: int = 2) -> dict[str, np.ndarray]:
    """Their decoders' means on fixed z, as their mnist/sample.py takes them (sigmoid of the
    image logits; softmax of the label logits, the exp of its log_softmax)."""
    z = torch.from_numpy(np.random.default_rng(seed).normal(0, 1, (B, D)).astype(np.float32))
    image = torch.sigmoid(model.image_decoder(z)).view(B, 1, 28, 28)
    return {"z": z.numpy(), "image": nhwc(image),
            "digit": torch.softmax(model.text_decoder(z), dim=1).numpy()}


def seeded_model(model_mod, seed: int, narrow: dict | None = None):
    """Their `MVAE(D)` (hidden widths through `narrow` if given) with seeded weights, and
    the ordered shapes of its state_dict."""
    torch.manual_seed(seed)
    with narrow_layers(narrow or {}):
        model = model_mod.MVAE(D)
    shapes = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    with torch.no_grad():
        for k, v in golden.seeded_weights(shapes, seed, STDDEV, BIAS_STDDEV).items():
            model.state_dict()[k].copy_(torch.from_numpy(v))
    return model, shapes


def make(snapshot: str, seed: int = 0,
         checkpoint_dir: str = "/tmp/mvae_golden") -> tuple[Fixture, KinkRecorder]:
    model_mod, train = load(snapshot)
    # full width: their checkpoint format and decoders' outputs for the import round trip
    full, full_shapes = seeded_model(model_mod, seed)
    start_decoded = decoded(full)
    # the starting weights in their `save_checkpoint` format, for the import CLI (outside the
    # project: tests use the seeded weights and `decoded/`)
    train.save_checkpoint({"state_dict": full.state_dict(), "best_loss": 0.0, "n_latents": D,
                           "optimizer": None}, False, folder=checkpoint_dir)
    model, shapes = seeded_model(model_mod, seed, NARROW)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    settings = trajectory.adam_settings(optimizer)
    config = dict(CONFIG, lr=settings["lr"], beta1=settings["betas"][0],
                  beta2=settings["betas"][1], adam_epsilon=settings["eps"],
                  amsgrad=settings["amsgrad"])
    fx = Fixture("mvae_mnist_label", dict(
        case="mvae_mnist_label", repo="mhw32/multimodal-vae-public",
        commit=repo_commit(snapshot, MVAE_COMMIT),
        files=["mnist/model.py (MVAE, ImageEncoder/Decoder, TextEncoder/Decoder, "
               "ProductOfExperts, prior_expert, Swish, reparametrize)",
               "mnist/train.py (elbo_loss, binary_cross_entropy_with_logits, cross_entropy; "
               "the loop body and annealing factor of train())"],
        config=config, steps_per_epoch=N_MINI_BATCHES, lambdas=[LAMBDA_IMAGE, LAMBDA_TEXT],
        seed=seed, stddev=STDDEV, bias_stddev=BIAS_STDDEV,
        narrow={str(k): v for k, v in NARROW.items()},
        weight_shapes=[[k, list(s)] for k, s in shapes],
        full_weight_shapes=[[k, list(s)] for k, s in full_shapes],
        note="image (B,1,28,28) of 0/1 pixels + digit label (their integer `text`, our one-hot "
             "`digit`); loss = ELBO(image, digit) + ELBO(image) + ELBO(digit), each a batch "
             "mean of lambda-weighted -log-likelihoods of the subset's modalities + annealing "
             f"* KL of the PoE (with prior expert) posterior; {ITERATIONS} iterations of "
             f"train()'s loop body, {N_MINI_BATCHES} batches per epoch (hidden widths "
             "narrowed; weight_shapes), and full-width start weights for the import round "
             "trip (full_weight_shapes, decoded/)"))
    gen = torch.Generator().manual_seed(seed)
    elbo = train.elbo_loss
    lam = dict(lambda_image=LAMBDA_IMAGE, lambda_text=LAMBDA_TEXT)
    model.train()

    def iteration(t):
        epoch, batch_idx = 1 + (t - 1) // N_MINI_BATCHES, (t - 1) % N_MINI_BATCHES
        af = annealing_factor(epoch, batch_idx)
        # MNIST-like 0/1 intensities (their likelihood is smooth, see KinkRecorder below)
        image = (torch.rand(B, 1, 28, 28, generator=gen) < 0.5).float()
        text = torch.randint(0, CLASSES, (B,), generator=gen)
        optimizer.zero_grad()
        with ReparameterizeRecorder(model, "reparametrize") as rec, kinks:
            out = {"joint": model(image, text), "image": model(image), "digit": model(text=text)}
        if len(rec.draws) != 3:
            raise RuntimeError(f"expected 3 reparametrize draws, got {len(rec.draws)}")
        inputs = {"joint": (image, text), "image": (image, None), "digit": (None, text)}
        terms = {}
        for subset, (img_recon, txt_recon, mu, logvar) in out.items():
            x_img, x_txt = inputs[subset]
            rec_img = img_recon if x_img is not None else None
            rec_txt = txt_recon if x_txt is not None else None
            terms[f"elbo_{subset}"] = elbo(rec_img, x_img, rec_txt, x_txt, mu, logvar, **lam,
                                           annealing_factor=af)
            terms[f"kl_{subset}"] = elbo(None, None, None, None, mu, logvar,
                                         annealing_factor=1.0)
            if x_img is not None:
                terms[f"rec_{subset}_image"] = elbo(rec_img, x_img, None, None, mu, logvar,
                                                    annealing_factor=0.0)
            if x_txt is not None:
                terms[f"rec_{subset}_digit"] = elbo(None, None, rec_txt, x_txt, mu, logvar,
                                                    annealing_factor=0.0)
        loss = terms["elbo_joint"] + terms["elbo_image"] + terms["elbo_digit"]
        terms["loss"] = loss
        loss.backward()
        optimizer.step()
        terms = {k: v.item() for k, v in terms.items()}
        terms["annealing_factor"] = af
        batch = {"image": nhwc(image), "digit": np.eye(CLASSES, dtype=np.float32)[text.numpy()]}
        return batch, {"eps": np.stack(rec.draws)}, terms  # eps (T, B, D): joint, image, digit

    # the model's forward passes only: their binary_cross_entropy_with_logits clamps -logits at
    # 0 inside the smooth log(1 + e^x) (no kink of the loss), and their networks are Swish MLPs
    kinks = KinkRecorder(model)
    trajectory.run(fx, ITERATIONS, dict(model.named_parameters()), optimizer, iteration)
    fx.meta.update(kinks.summary())
    fx.add("likelihood/", likelihood_probes(train))
    fx.add("anneal/", {"factor": annealing_schedule()})
    fx.add("decoded/", start_decoded)
    return fx, kinks


def make_all(snapshot: str, seed: int = 0) -> list[Fixture]:
    return [first_robust_seed(lambda s: make(snapshot, s), seed)[1]]
