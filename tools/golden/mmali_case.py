"""Golden cases of the authors' mmALI (6b5d/mmali): one critic and one generator update from
the seeded start, then a trajectory of whole training iterations through their loop.

The factorised model (`models/mmali/factor2.py` `FactorModel`) is built as
`train_mmali_mnist_svhn.py` / `train_mmali_multimnist.py` build it, the joint ablation
(`models/mmali/joint.py` `JointModel`) as `train_mmali_multimnist_joint.py`, with smaller
hidden widths (`torch_common.NARROW`, `narrow_layers`) and 7x7 MNIST views, so that the
fixture stores every entry of every weight, Adam slot and EMA copy after every iteration.

A trajectory iteration is their script's loop body: `dis_iter` critic updates (batch A with
prior z, batch B with shared content and `utils.permute_dim` negatives), `gen_iter` generator
updates (batches C, D), each `zero_grad / backward / step` of their two `torch.optim.Adam`
(betas (b1, b2) from the config), then `model_ema.lerp(model, beta if n_iter > ema_start else
0)`. One change, made on both sides: after every critic update the spectral-norm u, v are set
to the exact top singular pair of the new weights (`exact_singular_vectors`), because the
number of power iterations per update differs by design (mmali.py); test_spectral_norm_fidelity
checks the iteration itself.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from mmali_tf.reference import golden
from tools.golden.kinks import KinkRecorder, first_robust_seed
from tools.golden.torch_common import (DrawRecorder, Fixture, exact_singular_vectors,
                                       NARROW, narrow_layers, nhwc, sigmas,
                                       stub_modules)

MMALI_COMMIT = "3b500a7d8680c0cb8f414d9dc90608e0cd235c40"
MNIST_FULL = (1, 28, 28)
MNIST_SMALL = (1, 7, 7)
SVHN = (3, 32, 32)


@dataclass
class Setup:
    """One golden mmALI case: our modality -> the authors' key, image shapes (CHW), config,
    batch rows per update `n`, trajectory `iterations`, width map `narrow`, and `seed`: where
    `make`'s search for a seed that keeps every kink input off its kink starts (set to a seed
    that search found, so that regeneration does not repeat it)."""

    case: str
    keys: dict
    shapes: tuple
    config: dict
    script: str
    n: int = 3
    iterations: int = 5
    narrow: dict = field(default_factory=lambda: dict(NARROW))
    seed: int = 0
    files: list = field(default_factory=list)

    @property
    def mods(self) -> list:
        return list(self.keys)

    @property
    def joint(self) -> bool:
        return self.config["model"] == "mmali_joint"


BASE = dict(model="mmali", latent_dim=20, style_dim=10, lr=2e-4, beta1=0.5, beta2=0.999,
            init="normal", ema_decay=0.9, ema_start=2)
FACTOR_FILES = ["models/mmali/factor2.py (FactorModel.forward_jsd2, lerp)", "models/mnist.py",
                "models/svhn.py", "models/mnist_svhn.py", "models/multimnist.py", "utils.py"]
MNIST_SVHN = Setup("mmali_mnist_svhn", {"mnist": "0mnist", "svhn": "1svhn"},
                   (MNIST_SMALL, SVHN),
                   dict(BASE, dataset="mnist_svhn", lambda_unimodal=0.1, lambda_x_rec=0.05,
                        lambda_s_rec=0.05, lambda_c_rec=0.05, joint_rec=True, dis_iter=1,
                        gen_iter=2),
                   "train_mmali_mnist_svhn.py", n=2, seed=2, files=FACTOR_FILES)
MULTI_KEYS = {f"rot{90 * i}": f"{i}mnist" for i in range(3)}
MULTIMNIST = Setup("mmali_multimnist_m3", MULTI_KEYS, (MNIST_SMALL,) * 3,
                   dict(BASE, dataset="multimnist", num_views=3, lambda_unimodal=0.1,
                        dis_iter=2, gen_iter=1),
                   "train_mmali_multimnist.py", files=FACTOR_FILES)
# M > 2 with every reconstruction term and joint_rec: the combination of
# configs/polydigits_mmali.cfg (its lambdas), through the same script's options
MULTIMNIST_REC = Setup("mmali_multimnist_m3_rec", MULTI_KEYS, (MNIST_SMALL,) * 3,
                       dict(BASE, dataset="multimnist", num_views=3, lambda_unimodal=0.1,
                            lambda_x_rec=20.0, lambda_s_rec=1.0, lambda_c_rec=1.0,
                            joint_rec=True, dis_iter=2, gen_iter=2),
                       "train_mmali_multimnist.py", files=FACTOR_FILES)
JOINT = Setup("mmali_joint_multimnist_m3", MULTI_KEYS, (MNIST_SMALL,) * 3,
              dict(BASE, model="mmali_joint", dataset="multimnist", num_views=3, dis_iter=2,
                   gen_iter=2),
              "train_mmali_multimnist_joint.py",
              files=["models/mmali/joint.py (JointModel.forward_jsd, lerp)",
                     "models/multimnist.py (MultiXZDiscriminator)", "models/mnist.py",
                     "utils.py"])
CASES = (MNIST_SVHN, MULTIMNIST, MULTIMNIST_REC, JOINT)


# utils.py imports these for its evaluation helpers (never called by a training step)
STUBS = {"skimage": {}, "skimage.filters": {"threshold_yen": None}}


def _parts(shape, d: int, n_mod: int):
    import models
    import models.mnist
    import models.svhn
    if shape[0] == 1:
        return (models.GaussianConditional(models.mnist.Encoder(img_shape=shape,
                                                                latent_dim=2 * d)),
                models.mnist.Decoder(img_shape=shape, latent_dim=d),
                nn.ModuleList([models.mnist.XZDiscriminator(img_shape=shape, latent_dim=d,
                                                            output_dim=n_mod + 1),
                               models.mnist.XZDiscriminator(img_shape=shape, latent_dim=d)]))
    return (models.GaussianConditional(models.svhn.Encoder(channels=3, latent_dim=2 * d)),
            models.svhn.Decoder(channels=3, latent_dim=d),
            nn.ModuleList([models.svhn.XZDiscriminator(channels=3, latent_dim=d,
                                                       output_dim=n_mod + 1),
                           models.svhn.XZDiscriminator(channels=3, latent_dim=d)]))


def build(setup: Setup, shapes=None):
    """The authors' FactorModel / JointModel (their classes and constructor arguments, as
    `setup.script`) for image shapes `shapes` (default: the setup's)."""
    stub_modules(STUBS)
    import models.mmali.factor2
    import models.mmali.joint
    import models.mnist_svhn
    import models.multimnist
    cfg, shapes = setup.config, shapes or setup.shapes
    d, s, n_mod = cfg["latent_dim"], cfg["style_dim"], len(setup.keys)
    nets = {k: _parts(shape, d, n_mod) for k, shape in zip(setup.keys.values(), shapes)}
    if setup.joint:
        return models.mmali.joint.JointModel(
            encoders={k: v[0] for k, v in nets.items()},
            decoders={k: v[1] for k, v in nets.items()},
            discriminator=models.multimnist.MultiXZDiscriminator(
                n_modalities=n_mod, latent_dim=n_mod * s + d - s, output_dim=n_mod + 1,
                img_shape=shapes[0]),
            content_dim=d - s)
    joint = (models.mnist_svhn.XXDiscriminatorDot(img_shape=shapes[0], channels=3)
             if n_mod == 2 else
             models.multimnist.MultiXDiscriminator(n_modalities=n_mod, img_shape=shapes[0]))
    return models.mmali.factor2.FactorModel(
        encoders={k: v[0] for k, v in nets.items()},
        decoders={k: v[1] for k, v in nets.items()},
        xz_discriminators={k: v[2] for k, v in nets.items()},
        joint_discriminator=joint, content_dim=d - s,
        lambda_unimodal=cfg["lambda_unimodal"], lambda_x_rec=cfg.get("lambda_x_rec", 0.0),
        lambda_c_rec=cfg.get("lambda_c_rec", 0.0), lambda_s_rec=cfg.get("lambda_s_rec", 0.0),
        joint_rec=cfg.get("joint_rec", False))


def our_name(setup: Setup, step: str, name: str) -> str:
    """This project's loss-term name of an authors' loss key."""
    mods = setup.mods
    if setup.joint:
        last = sorted(setup.keys.values())[-1]
        i = int(name[len(last) + 2:])
        return f"{step}_" + ([f"q_{m}" for m in mods] + ["p"])[i]
    by_key = {v: k for k, v in setup.keys.items()}
    for key, m in by_key.items():
        if name.startswith(key + "_"):
            rest = name[len(key) + 1:]
            if rest in ("c0", "c1"):
                return f"{step}_{m}_{rest}"
            if rest.startswith("c") and rest[1:].isdigit():
                others = [o for o in mods if o != m]
                return f"{step}_{m}_cross_{others[int(rest[1:]) - 2]}"
            return {"1": f"d_{m}_b", "s_rec": f"g_{m}_s_rec", "x_rec": f"g_{m}_x_rec",
                    "c_rec": f"g_{m}_c_rec", "x_rec_joint": f"g_{m}_joint_x_rec"}[rest]
    if name.startswith("joint_q"):
        return f"g_joint_q_{mods[int(name[7:])]}"
    return {"joint": "d_joint", "joint_p": "g_joint_p", "joint_c_rec": "g_joint_c_rec"}[name]


@torch.no_grad()
def decoded(model, keys: dict, z: torch.Tensor) -> dict:
    """{"z": z, <our modality>: the authors' decoder output on z (NHWC)}, in eval mode."""
    was_training = model.training
    model.eval()
    out = {"z": z, **{m: nhwc(getattr(model.decoders, k)(z)) for m, k in keys.items()}}
    model.train(was_training)
    return out


def aliases(model) -> tuple[str, ...]:
    """Prefixes under which the model registers modules a second time: `FactorModel` its
    encoders/decoders under `generators.` and critics under `discriminators.`; `JointModel`
    only the former (its critic lives under `discriminators.`)."""
    if hasattr(model, "xz_discriminators"):
        return ("generators.", "discriminators.")
    return ("generators.",)


def sn_vectors(model) -> dict:
    return {k: v for k, v in model.state_dict().items()
            if k.endswith(("weight_u", "weight_v")) and not k.startswith(aliases(model))}


def weight_shapes(model) -> list:
    """(key, shape) of every seeded tensor, in state_dict order (aliases skipped)."""
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()
            if not k.endswith(("weight_u", "weight_v")) and not k.startswith(aliases(model))]


def seed_model(model, seed: int) -> None:
    """golden.seeded_weights(seed) (the init_param_normal distribution) and exact SN pairs."""
    state = model.state_dict()
    with torch.no_grad():
        for k, v in golden.seeded_weights(weight_shapes(model), seed).items():
            state[k].copy_(torch.from_numpy(v))
    exact_singular_vectors(model)


def g_draw_names(setup: Setup) -> list[str]:
    """Names of the authors' in-model normal draws of a G step, in their call order."""
    cfg, mods = setup.config, setup.mods
    rec = cfg.get("lambda_s_rec", 0) > 0 or (cfg.get("lambda_c_rec", 0) > 0
                                             and not cfg.get("joint_rec"))
    names = [f"eps_c/{m}" for m in mods] + ([f"eps_rec/{m}" for m in mods] if rec else [])
    names += [f"eps_d/{m}" for m in mods]
    if cfg.get("joint_rec") and cfg.get("lambda_c_rec", 0) > 0:
        names.append("eps_joint_c_rec")
    if cfg.get("joint_rec") and cfg.get("lambda_x_rec", 0) > 0:
        names.append("eps_joint_x_rec")
    return names


class Loop:
    """The authors' training-loop body for `model` (their script's D and G updates)."""

    def __init__(self, setup: Setup, model) -> None:
        self.setup, self.model = setup, model
        cfg = setup.config
        self.d, self.s = cfg["latent_dim"], cfg["style_dim"]

    def images(self) -> list[torch.Tensor]:
        """A paired batch (pixel values on the 1/255 grid, like the datasets' images)."""
        n = self.setup.n
        return [torch.randint(0, 256, (n, *shape)).float() / 255 for shape in self.setup.shapes]

    def inputs(self, xs, zs, extra=None) -> dict:
        keys = self.setup.keys
        return {keys[m]: {"x": x, "z": zs[m], **({} if extra is None else {"extra_x": extra[m]})}
                for m, x in zip(self.setup.mods, xs)}

    def step(self, losses: dict, opt) -> None:
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        opt.step()

    def update(self, train_d: bool, opt) -> tuple[list, dict, dict]:
        """One update: (its paired batches, its draws by our names, its losses by ours)."""
        if self.setup.joint:
            return self._joint_update(train_d, opt)
        return self._d_update(opt) if train_d else self._g_update(opt)

    def _d_update(self, opt):
        """batch A (joint=False) then batch B (joint=True), as the training script."""
        setup, model, mods, n = self.setup, self.model, self.setup.mods, self.setup.n
        xa, xb = self.images(), self.images()
        za = {m: torch.randn(n, self.d) for m in mods}
        perm_b = {m: torch.randperm(n) for m in mods}  # utils.permute_dim of each x
        # the script's batch-B z (s1, s2, c): drawn, but a critic update never reads it
        zb = {m: torch.cat([torch.randn(n, self.s), torch.zeros(n, self.d - self.s)], 1)
              for m in mods}
        with DrawRecorder() as rec:
            losses = model(self.inputs(xa, za), train_d=True, joint=False)
            losses.update(model(self.inputs(xb, zb, {m: x[perm_b[m]] for m, x in zip(mods, xb)}),
                                train_d=True, joint=True))
            self.step(losses, opt)
        draws = rec.take([f"eps_a/{m}" for m in mods])
        for m in mods:
            pa, pz = rec.take(["perm", "perm_z"], "perms").values()
            draws[f"perm_a/{m}"] = pa
            draws[f"c_a/{m}"] = za[m].numpy()[pz][:, self.s:]
        draws.update(rec.take([f"eps_b/{m}" for m in mods]))
        rec.check_empty()
        draws.update({f"z_a/{m}": za[m] for m in mods})
        draws.update({f"perm_b/{m}": perm_b[m].numpy().astype(np.int32) for m in mods})
        return [xa, xb], draws, {our_name(setup, "d", k): v for k, v in losses.items()}

    def _g_update(self, opt):
        """batch C (joint=False) then batch D (shared content, joint=True)."""
        setup, model, mods, n = self.setup, self.model, self.setup.mods, self.setup.n
        xc, xd = self.images(), self.images()
        zc = {m: torch.randn(n, self.d) for m in mods}
        s_d = {m: torch.randn(n, self.s) for m in mods}
        c_d = torch.randn(n, self.d - self.s)
        with DrawRecorder() as rec:
            losses = model(self.inputs(xc, zc), train_d=False, joint=False)
            losses.update(model(self.inputs(xd, {m: torch.cat([s_d[m], c_d], 1)
                                                 for m in mods}), train_d=False, joint=True))
            self.step(losses, opt)
        draws = rec.take(g_draw_names(setup))
        rec.check_empty()
        draws.update({f"z_c/{m}": zc[m] for m in mods})
        draws.update({f"z_d/style/{m}": s_d[m] for m in mods})
        draws["z_d/content"] = c_d
        return [xc, xd], draws, {our_name(setup, "g", k): v for k, v in losses.items()}

    def _joint_update(self, train_d: bool, opt):
        """The joint script's update: a batch with independent prior z whose losses the second
        call's identical keys overwrite (consumed, discarded), then the shared-content batch."""
        setup, model, mods, n = self.setup, self.model, self.setup.mods, self.setup.n
        discarded, xs = self.images(), self.images()
        styles = {m: torch.randn(n, self.s) for m in mods}
        content = torch.randn(n, self.d - self.s)
        with DrawRecorder() as rec:
            losses = model(self.inputs(discarded, {m: torch.randn(n, self.d) for m in mods}),
                           train_d=train_d)
            losses.update(model(self.inputs(xs, {m: torch.cat([styles[m], content], 1)
                                                 for m in mods}), train_d=train_d))
            self.step(losses, opt)
        rec.take([f"discarded/{m}" for m in mods])
        draws = rec.take([f"eps/{m}" for m in mods])
        rec.check_empty()
        draws.update({f"z/style/{m}": styles[m] for m in mods})
        draws["z/content"] = content
        return [xs], draws, {our_name(setup, "d" if train_d else "g", k): v
                             for k, v in losses.items()}


def optimizers(setup: Setup, model) -> tuple:
    """(optimizer_D, optimizer_G) as the scripts build them."""
    cfg = setup.config
    return tuple(torch.optim.Adam(part.parameters(), lr=cfg["lr"],
                                  betas=(cfg["beta1"], cfg["beta2"]))
                 for part in (model.discriminators, model.generators))


def nhwc_batches(setup: Setup, batches: list) -> dict:
    """{our modality: NHWC rows of every paired batch, in order} (our train_step's chunks)."""
    return {m: np.concatenate([nhwc(b[i]) for b in batches])
            for i, m in enumerate(setup.mods)}


def one_updates(fx: Fixture, setup: Setup, model, start: dict) -> None:
    """One D update and one G update, each from the starting state: batches, draws, terms,
    every gradient and updated parameter; spectral-norm state after the D update."""
    params = dict(model.named_parameters())
    for step, train_d in (("d", True), ("g", False)):
        model.load_state_dict(start)
        model.zero_grad(set_to_none=True)
        opt_d, opt_g = optimizers(setup, model)
        batches, draws, losses = Loop(setup, model).update(train_d, opt_d if train_d else opt_g)
        names = "ab" if train_d else "cd"
        for b, batch in zip(names, batches):
            fx.add(f"batch/{step}/", {f"{b}/{m}": nhwc(x) for m, x in zip(setup.mods, batch)})
        fx.add(f"draw/{step}/", draws)
        fx.add(f"loss/{step}/", losses)
        fx.add(f"grad/{step}/", golden.summarise({k: p.grad.numpy() for k, p in params.items()
                                                  if p.grad is not None}))
        fx.add(f"after/{step}/", golden.summarise({k: p.detach().numpy()
                                                   for k, p in params.items()}))
        if train_d:
            fx.add("sn_after_d/", sn_vectors(model))
            fx.add("sigma_after_d/", sigmas(model, aliases=aliases(model)))


def trajectory(fx: Fixture, setup: Setup, model, model_ema, start: dict) -> None:
    """`setup.iterations` iterations of the script's loop from the starting state (`model_ema`:
    the script's deep copy of the model); after each:
    the rows it consumed, its draws (`<name>#<k>` for the k-th update asking), the logged
    loss averages, and every weight, Adam slot (exp_avg, exp_avg_sq) and EMA weight."""
    cfg = setup.config
    model.load_state_dict(start)
    model_ema.load_state_dict(start)
    model.zero_grad(set_to_none=True)
    opt_d, opt_g = optimizers(setup, model)
    loop = Loop(setup, model)
    names = {p: k for k, p in model.named_parameters()}
    for n_iter in range(setup.iterations):
        batches, draws, logs, seen = [], {}, {}, Counter()
        for train_d, count, opt in ((True, cfg["dis_iter"], opt_d),
                                    (False, cfg["gen_iter"], opt_g)):
            total = "d_loss" if train_d else "g_loss"
            for _ in range(count):
                used, update_draws, losses = loop.update(train_d, opt)
                if train_d:
                    exact_singular_vectors(model)  # see the module docstring
                batches += used
                for k, v in update_draws.items():
                    draws[f"{k}#{seen[k]}"] = v
                    seen[k] += 1
                for k, v in {**losses, total: sum(losses.values())}.items():
                    logs[k] = logs.get(k, 0.0) + v.item() / count
        model_ema.lerp(model, cfg["ema_decay"] if n_iter > cfg["ema_start"] else 0.0)
        pre = f"it{n_iter + 1}/"
        fx.add(pre + "batch/", nhwc_batches(setup, batches))
        fx.add(pre + "draw/", draws)
        fx.add(pre + "loss/", logs)
        fx.add(pre + "weight/", {names[p]: p for p in model.parameters()})
        for opt in (opt_d, opt_g):
            for p, state in opt.state.items():
                fx.add(pre + "adam_m/", {names[p]: state["exp_avg"]})
                fx.add(pre + "adam_v/", {names[p]: state["exp_avg_sq"]})
        fx.add(pre + "ema/", {k: p for k, p in model_ema.named_parameters()
                              if k.startswith(("encoders.", "decoders."))})


def make(setup: Setup) -> Fixture:
    """The case's fixture: the first seed from `setup.seed` whose whole case keeps every kink
    input `kinks.MARGIN` from its kink."""
    def run(seed):
        torch.manual_seed(seed)
        with narrow_layers(setup.narrow):
            model = build(setup)
        seed_model(model, seed)
        model.train()
        start = {k: v.clone() for k, v in model.state_dict().items()}
        fx = Fixture(setup.case, dict(
            case=setup.case, repo="6b5d/mmali", commit=MMALI_COMMIT,
            files=setup.files + [f"{setup.script} (model construction, training loop)"],
            config=setup.config, batch=setup.n, seed=seed, modality_keys=setup.keys,
            modalities=setup.mods, shapes_chw=[list(x) for x in setup.shapes],
            narrow=setup.narrow, iterations=setup.iterations,
            weight_shapes=[[k, list(v)] for k, v in weight_shapes(model)],
            note=__doc__.split("\n\n", 1)[1].strip()))
        fx.add("sn_start/", sn_vectors(model))
        model_ema = copy.deepcopy(model)  # as the scripts, right after init_param_normal
        with KinkRecorder(model, strict=True) as rec:
            one_updates(fx, setup, model, start)
            trajectory(fx, setup, model, model_ema, start)
        return fx, rec
    seed, fx, rec = first_robust_seed(run, setup.seed)
    fx.meta.update(rec.summary())
    full = build(setup, [MNIST_FULL if s == MNIST_SMALL else s for s in setup.shapes])
    fx.meta["full_weight_shapes"] = [[k, list(v)] for k, v in weight_shapes(full)]
    return fx


def write_checkpoint(out_dir: str, steps: int = 3, n: int = 8, seed: int = 0,
                     path: str = "/tmp/mmali_golden/authors_mmali_mnist_svhn.pt") -> str:
    """The full-size MNIST-SVHN model at the seeded start, trained a few steps with the
    authors' loop and saved as their `save_checkpoint` does ({'n_iter', 'model', 'model_ema',
    ...}); the fixture `mmali_mnist_svhn_decoders` holds the start (seed, weight shapes,
    spectral-norm vectors, decoder outputs) and the checkpoint's decoder outputs on fixed z
    for the import round trip. The checkpoint (~100 MB, as .pt and as .npz) is written outside
    the project."""
    import os

    setup = MNIST_SVHN
    cfg, keys = setup.config, setup.keys
    shapes = (MNIST_FULL, SVHN)
    torch.manual_seed(seed)
    model = build(setup, shapes)
    seed_model(model, seed)
    model.train()
    d, s = cfg["latent_dim"], cfg["style_dim"]
    fx = Fixture("mmali_mnist_svhn_decoders", dict(
        case="mmali_mnist_svhn_decoders", repo="6b5d/mmali", commit=MMALI_COMMIT,
        checkpoint=path, steps=steps, config=dict(cfg, ema_decay=0.0), seed=seed,
        weight_shapes=[[k, list(v)] for k, v in weight_shapes(model)],
        note="start/: decoder outputs (NHWC) of the full-size model at the seeded start "
             "(seed, weight_shapes, sn_start/); model/, model_ema/: of the checkpoint's "
             "model and model_ema on model/z"))
    fx.add("sn_start/", sn_vectors(model))
    fx.add("decoded/", decoded(model, keys, torch.randn(8, d)))
    ema = copy.deepcopy(model)
    opts = optimizers(setup, model)
    for _ in range(steps):
        for train_d, opt in ((True, opts[0]), (False, opts[1])):
            xs = [torch.rand(n, *shape) for shape in shapes]
            c = torch.randn(n, d - s)
            losses = model({keys[m]: {"x": x, "z": torch.randn(n, d)} for m, x in zip(keys, xs)},
                           train_d=train_d, joint=False)
            losses.update(model({keys[m]: {"x": x, "z": torch.cat([torch.randn(n, s), c], 1),
                                           "extra_x": x[torch.randperm(n)]}
                                 for m, x in zip(keys, xs)}, train_d=train_d, joint=True))
            opt.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            opt.step()
        ema.lerp(model, 0.5)  # a visible EMA (the script's beta after ema_start)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({"n_iter": steps, "model": model.state_dict(), "model_ema": ema.state_dict(),
                "optimizer_D": opts[0].state_dict(), "optimizer_G": opts[1].state_dict()}, path)
    np.savez(path[:-3] + ".npz", n_iter=steps,
             **{f"model/{k}": v.numpy() for k, v in model.state_dict().items()},
             **{f"model_ema/{k}": v.numpy() for k, v in ema.state_dict().items()})
    z = torch.randn(8, d)
    fx.add("model/", decoded(model, keys, z))
    fx.add("model_ema/", decoded(ema, keys, z))
    return fx.write(out_dir)
