"""Golden case: one critic update and one generator update of the authors' factorised mmALI.

Builds `models.mmali.factor2.FactorModel` exactly as `train_mmali_mnist_svhn.py` does (MNIST-SVHN
networks, Gaussian encoders, `XXDiscriminatorDot`), runs the training script's D step (batches A
and B) and G step (batches C and D) once each with two Adam optimizers, and records every loss
term (under this project's names), every draw, gradient and updated parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from mmali_tf.reference import golden
from tools.golden.torch_common import (DrawRecorder, Fixture, exact_singular_vectors, nhwc,
                                       sigmas)

MMALI_COMMIT = "3b500a7d8680c0cb8f414d9dc90608e0cd235c40"


@dataclass
class Setup:
    """One golden mmALI case: our modality -> the authors' key, image shapes (CHW), config."""

    case: str
    keys: dict
    shapes: tuple
    config: dict
    script: str

    @property
    def mods(self) -> list:
        return list(self.keys)


BASE = dict(model="mmali", latent_dim=20, style_dim=10, lr=2e-4, beta1=0.5, beta2=0.999,
            init="normal")
MNIST_SVHN = Setup("mmali_mnist_svhn", {"mnist": "0mnist", "svhn": "1svhn"},
                   ((1, 28, 28), (3, 32, 32)),
                   dict(BASE, dataset="mnist_svhn", lambda_unimodal=0.1, lambda_x_rec=0.05,
                        lambda_s_rec=0.05, lambda_c_rec=0.05, joint_rec=True),
                   "train_mmali_mnist_svhn.py")
MULTIMNIST = Setup("mmali_multimnist_m3", {f"rot{90 * i}": f"{i}mnist" for i in range(3)},
                   ((1, 28, 28),) * 3,
                   dict(BASE, dataset="multimnist", num_views=3, lambda_unimodal=0.1),
                   "train_mmali_multimnist.py")
KEYS = MNIST_SVHN.keys
CONFIG = MNIST_SVHN.config


def build(setup: Setup):
    """The authors' FactorModel (their classes and constructor arguments, as `setup.script`)."""
    import models
    import models.mmali.factor2
    import models.mnist
    import models.mnist_svhn
    import models.multimnist
    import models.svhn
    cfg = setup.config
    d, s, n_mod = cfg["latent_dim"], cfg["style_dim"], len(setup.keys)
    img = (1, 28, 28)

    def parts(shape):
        if shape == img:
            return (models.mnist.Encoder(img_shape=img, latent_dim=2 * d),
                    models.mnist.Decoder(img_shape=img, latent_dim=d),
                    [models.mnist.XZDiscriminator(img_shape=img, latent_dim=d,
                                                  output_dim=n_mod + 1),
                     models.mnist.XZDiscriminator(img_shape=img, latent_dim=d)])
        return (models.svhn.Encoder(channels=3, latent_dim=2 * d),
                models.svhn.Decoder(channels=3, latent_dim=d),
                [models.svhn.XZDiscriminator(channels=3, latent_dim=d, output_dim=n_mod + 1),
                 models.svhn.XZDiscriminator(channels=3, latent_dim=d)])
    nets = {k: parts(shape) for k, shape in zip(setup.keys.values(), setup.shapes)}
    joint = (models.mnist_svhn.XXDiscriminatorDot(img_shape=img, channels=3) if n_mod == 2
             else models.multimnist.MultiXDiscriminator(n_modalities=n_mod))
    return models.mmali.factor2.FactorModel(
        encoders={k: models.GaussianConditional(v[0]) for k, v in nets.items()},
        decoders={k: v[1] for k, v in nets.items()},
        xz_discriminators={k: nn.ModuleList(v[2]) for k, v in nets.items()},
        joint_discriminator=joint, content_dim=d - s,
        lambda_unimodal=cfg["lambda_unimodal"], lambda_x_rec=cfg.get("lambda_x_rec", 0.0),
        lambda_c_rec=cfg.get("lambda_c_rec", 0.0), lambda_s_rec=cfg.get("lambda_s_rec", 0.0),
        joint_rec=cfg.get("joint_rec", False))


def our_name(setup: Setup, step: str, name: str) -> str:
    """This project's loss-term name of an authors' loss key."""
    mods = setup.mods
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


def sn_vectors(model) -> dict:
    return {k: v for k, v in model.state_dict().items()
            if k.endswith(("weight_u", "weight_v"))
            and not k.startswith(("generators.", "discriminators."))}


def grads_and_params(params: dict) -> tuple[dict, dict]:
    grads = {k: p.grad for k, p in params.items() if p.grad is not None}
    return grads, {k: p.detach().clone() for k, p in params.items()}


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


def make(setup: Setup = MNIST_SVHN, seed: int = 0, n: int = 6):
    """The fixture of `setup` and the authors' model (at its starting weights + one D step)."""
    torch.manual_seed(seed)
    model = build(setup)
    cfg, keys, mods = setup.config, setup.keys, setup.mods
    # FactorModel also registers its modules under `generators.` / `discriminators.`: aliases
    shapes = [(k, tuple(v.shape)) for k, v in model.state_dict().items()
              if not k.endswith(("weight_u", "weight_v"))
              and not k.startswith(("generators.", "discriminators."))]
    start = golden.seeded_weights(shapes, seed)
    state = model.state_dict()
    with torch.no_grad():
        for k, v in start.items():
            state[k].copy_(torch.from_numpy(v))
    exact_singular_vectors(model)
    start_state = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    d, s = cfg["latent_dim"], cfg["style_dim"]
    opt_g = torch.optim.Adam(model.generators.parameters(), lr=cfg["lr"],
                             betas=(cfg["beta1"], cfg["beta2"]))
    opt_d = torch.optim.Adam(model.discriminators.parameters(), lr=cfg["lr"],
                             betas=(cfg["beta1"], cfg["beta2"]))
    fx = Fixture(setup.case, dict(
        case=setup.case, repo="6b5d/mmali", commit=MMALI_COMMIT,
        files=["models/mmali/factor2.py (FactorModel.forward_jsd2)",
               f"{setup.script} (model construction, D/G step)", "models/mnist.py",
               "models/svhn.py", "models/mnist_svhn.py", "models/multimnist.py", "utils.py"],
        config=cfg, batch=n, seed=seed, modality_keys=keys, modalities=mods,
        shapes_chw=[list(x) for x in setup.shapes],
        note="Both updates start from golden.seeded_weights(seed) (the init_param_normal "
             "distribution). Spectral-norm u, v are the exact top singular pair, so a power "
             "iteration is a fixed point and the number of iterations per update (fewer in "
             "this project by design) does not change sigma."))
    fx.add("decoded/", decoded(model, keys, torch.randn(8, d)))
    fx.meta["weight_shapes"] = [[k, list(v)] for k, v in shapes]  # state_dict order
    fx.add("sn_start/", sn_vectors(model))

    def images():
        return [torch.rand(n, *shape) for shape in setup.shapes]

    def inputs(xs, zs, extra=None):
        return {keys[m]: {"x": x, "z": zs[m], **({} if extra is None else
                                                  {"extra_x": x[extra[m]]})}
                for m, x in zip(mods, xs)}

    params = dict(model.named_parameters())
    # ---- D step: batch A (joint=False) then batch B (joint=True), as the training script
    xa, xb = images(), images()
    za = {m: torch.randn(n, d) for m in mods}
    perm_b = {m: torch.randperm(n) for m in mods}
    unused_z = {m: torch.zeros(n, d) for m in mods}
    with DrawRecorder() as rec:
        losses = model(inputs(xa, za), train_d=True, joint=False)
        losses.update(model(inputs(xb, unused_z, perm_b), train_d=True, joint=True))
        opt_d.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        opt_d.step()
    draws = rec.take([f"eps_a/{m}" for m in mods])
    for m in mods:
        pa, pz = rec.take(["perm", "perm_z"], "perms").values()
        draws[f"perm_a/{m}"] = pa
        draws[f"c_a/{m}"] = za[m].numpy()[pz][:, s:]
    draws.update(rec.take([f"eps_b/{m}" for m in mods]))
    rec.check_empty()
    draws.update({f"z_a/{m}": za[m] for m in mods})
    draws.update({f"perm_b/{m}": perm_b[m].numpy().astype(np.int32) for m in mods})
    grads, after = grads_and_params(params)
    fx.add("batch/d/", {f"a/{m}": nhwc(x) for m, x in zip(mods, xa)})
    fx.add("batch/d/", {f"b/{m}": nhwc(x) for m, x in zip(mods, xb)})
    fx.add("draw/d/", draws)
    fx.add("loss/d/", {our_name(setup, "d", k): v for k, v in losses.items()})
    fx.add("grad/d/", golden.summarise({k: v.numpy() for k, v in grads.items()}))
    fx.add("after/d/", golden.summarise({k: v.numpy() for k, v in after.items()}))
    fx.add("sn_after_d/", sn_vectors(model))
    fx.add("sigma_after_d/", sigmas(model))
    # ---- G step, from the same starting weights (so that it is tested on its own)
    model.load_state_dict(start_state)
    model.zero_grad(set_to_none=True)
    xc, xd = images(), images()
    zc = {m: torch.randn(n, d) for m in mods}
    s_d = {m: torch.randn(n, s) for m in mods}
    c_d = torch.randn(n, d - s)
    with DrawRecorder() as rec:
        losses = model(inputs(xc, zc), train_d=False, joint=False)
        losses.update(model(inputs(xd, {m: torch.cat([s_d[m], c_d], 1) for m in mods}),
                            train_d=False, joint=True))
        opt_g.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        opt_g.step()
    draws = rec.take(g_draw_names(setup))
    rec.check_empty()
    draws.update({f"z_c/{m}": zc[m] for m in mods})
    draws.update({f"z_d/style/{m}": s_d[m] for m in mods})
    draws["z_d/content"] = c_d
    grads, after_g = grads_and_params(params)
    fx.add("batch/g/", {f"c/{m}": nhwc(x) for m, x in zip(mods, xc)})
    fx.add("batch/g/", {f"d/{m}": nhwc(x) for m, x in zip(mods, xd)})
    fx.add("draw/g/", draws)
    fx.add("loss/g/", {our_name(setup, "g", k): v for k, v in losses.items()})
    fx.add("grad/g/", golden.summarise({k: v.numpy() for k, v in grads.items()}))
    fx.add("after/g/", golden.summarise({k: v.numpy() for k, v in after_g.items()}))
    return fx, model


def write_checkpoint(model, out_dir: str, steps: int = 3, n: int = 8,
                     path: str = "/tmp/mmali_golden/authors_mmali_mnist_svhn.pt") -> str:
    """Train `model` a few more steps with the authors' loop and save it as their
    `save_checkpoint` does ({'n_iter', 'model', 'model_ema', ...}); also write the authors'
    decoder outputs on fixed z (`<out_dir>/mmali_mnist_svhn_decoders.npz`) for the import round
    trip. The checkpoint (~100 MB, as .pt and as .npz) is written outside the project."""
    import copy
    import os

    d, s = CONFIG["latent_dim"], CONFIG["style_dim"]
    ema = copy.deepcopy(model)
    opts = [torch.optim.Adam(p.parameters(), lr=CONFIG["lr"],
                             betas=(CONFIG["beta1"], CONFIG["beta2"]))
            for p in (model.discriminators, model.generators)]
    for it in range(steps):
        for train_d, opt in ((True, opts[0]), (False, opts[1])):
            xs = [torch.rand(n, 1, 28, 28), torch.rand(n, 3, 32, 32)]
            c = torch.randn(n, d - s)
            losses = model({KEYS[m]: {"x": x, "z": torch.randn(n, d)} for m, x in zip(KEYS, xs)},
                           train_d=train_d, joint=False)
            losses.update(model({KEYS[m]: {"x": x, "z": torch.cat([torch.randn(n, s), c], 1),
                                           "extra_x": x[torch.randperm(n)]}
                                 for m, x in zip(KEYS, xs)}, train_d=train_d, joint=True))
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
    fx = Fixture("mmali_mnist_svhn_decoders", dict(
        case="mmali_mnist_svhn_decoders", checkpoint=path, steps=steps,
        note="decoder outputs (NHWC) of the checkpoint's model and model_ema on z"))
    z = torch.randn(8, d)
    fx.add("model/", decoded(model, KEYS, z))
    fx.add("model_ema/", decoded(ema, KEYS, z))
    return fx.write(out_dir)


JOINT = Setup("mmali_joint_multimnist_m3", {f"rot{90 * i}": f"{i}mnist" for i in range(3)},
              ((1, 28, 28),) * 3, dict(BASE, model="mmali_joint", dataset="multimnist",
                                       num_views=3), "train_mmali_multimnist_joint.py")


def build_joint(setup: Setup):
    """The authors' JointModel with MultiXZDiscriminator (as train_mmali_multimnist_joint.py)."""
    import models
    import models.mmali.joint
    import models.mnist
    import models.multimnist
    cfg, img, n_mod = setup.config, (1, 28, 28), len(setup.keys)
    d, s = cfg["latent_dim"], cfg["style_dim"]
    keys = list(setup.keys.values())
    return models.mmali.joint.JointModel(
        encoders={k: models.GaussianConditional(models.mnist.Encoder(img_shape=img,
                                                                     latent_dim=2 * d))
                  for k in keys},
        decoders={k: models.mnist.Decoder(img_shape=img, latent_dim=d) for k in keys},
        discriminator=models.multimnist.MultiXZDiscriminator(
            n_modalities=n_mod, latent_dim=n_mod * s + d - s, output_dim=n_mod + 1),
        content_dim=d - s)


def make_joint(setup: Setup = JOINT, seed: int = 0, n: int = 6):
    """One D and one G update of the joint-discriminator ablation.

    The authors' script calls the model twice per update (a batch with independent prior z,
    then one with shared content), but both calls return the same loss keys
    ('<last key>_c<i>'), so `dict.update` keeps only the second call's losses: only the
    shared-content batch trains, as in our `mmali_joint` (one batch per update). The first
    call's draws are consumed and discarded here too.
    """
    torch.manual_seed(seed)
    model = build_joint(setup)
    cfg, keys, mods = setup.config, setup.keys, setup.mods
    shapes = [(k, tuple(v.shape)) for k, v in model.state_dict().items()
              if not k.endswith(("weight_u", "weight_v")) and not k.startswith("generators.")]
    state = model.state_dict()
    with torch.no_grad():
        for k, v in golden.seeded_weights(shapes, seed).items():
            state[k].copy_(torch.from_numpy(v))
    exact_singular_vectors(model)
    start_state = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    d, s = cfg["latent_dim"], cfg["style_dim"]
    fx = Fixture(setup.case, dict(
        case=setup.case, repo="6b5d/mmali", commit=MMALI_COMMIT,
        files=["models/mmali/joint.py (JointModel.forward_jsd)", f"{setup.script}",
               "models/multimnist.py (MultiXZDiscriminator)", "models/mnist.py"],
        config=cfg, batch=n, seed=seed, modality_keys=keys, modalities=mods,
        note=make_joint.__doc__.split("\n\n")[1].strip()))
    fx.meta["weight_shapes"] = [[k, list(v)] for k, v in shapes]
    fx.add("sn_start/", {k: v for k, v in model.state_dict().items()
                         if k.endswith(("weight_u", "weight_v"))})
    last = sorted(keys.values())[-1]
    names = {f"{last}_c{i}": n_ for i, n_ in enumerate([f"q_{m}" for m in mods] + ["p"])}
    params = dict(model.named_parameters())
    for step, train_d in (("d", True), ("g", False)):
        model.load_state_dict(start_state)
        model.zero_grad(set_to_none=True)
        opt = torch.optim.Adam((model.discriminators if train_d else model.generators)
                               .parameters(), lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]))
        discarded = [torch.rand(n, 1, 28, 28) for _ in mods]
        xs = [torch.rand(n, 1, 28, 28) for _ in mods]
        styles = {m: torch.randn(n, s) for m in mods}
        content = torch.randn(n, d - s)
        with DrawRecorder() as rec:
            losses = model({keys[m]: {"x": x, "z": torch.randn(n, d)}
                            for m, x in zip(mods, discarded)}, train_d=train_d)
            losses.update(model({keys[m]: {"x": x, "z": torch.cat([styles[m], content], 1)}
                                 for m, x in zip(mods, xs)}, train_d=train_d))
            opt.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            opt.step()
        rec.take([f"discarded/{m}" for m in mods])
        draws = rec.take([f"eps/{m}" for m in mods])
        rec.check_empty()
        draws.update({f"z/style/{m}": styles[m] for m in mods})
        draws["z/content"] = content
        grads, after = grads_and_params(params)
        fx.add(f"batch/{step}/", {f"a/{m}": nhwc(x) for m, x in zip(mods, xs)})
        fx.add(f"draw/{step}/", draws)
        fx.add(f"loss/{step}/", {f"{step}_{names[k]}": v for k, v in losses.items()})
        fx.add(f"grad/{step}/", golden.summarise({k: v.numpy() for k, v in grads.items()}))
        fx.add(f"after/{step}/", golden.summarise({k: v.numpy() for k, v in after.items()}))
        if train_d:
            fx.add("sn_after_d/", {k: v for k, v in model.state_dict().items()
                                   if k.endswith(("weight_u", "weight_v"))})
            fx.add("sigma_after_d/", sigmas(model, aliases=("generators.",)))
    return fx, model
