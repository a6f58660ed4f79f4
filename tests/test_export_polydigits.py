"""A polydigits run end to end: the shipped five-modality mmALI config trains (two steps, tiny
latent, no XLA), tools/export_onnx.py exports it from the run directory, and onnxruntime
translates into m4 from input subsets of every size on real polydigits test tuples, equal to
the TensorFlow model (geometric fusion of the subset, prior style) with the same noise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from mmali_tf.export.runtime import Bundle
from mmali_tf import data
from mmali_tf import latent as latent_lib
from mmali_tf.run_dir import load_trained

ROOT = Path(__file__).resolve().parents[1]
TOL = dict(rtol=1e-4, atol=1e-4)


def _run(args: list[str], timeout: int = 600) -> None:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("polydigits_export")
    run, cache = root / "run", root / "cache"
    _run(["-m", "mmali_tf.train", f"--flagfile={ROOT / 'configs' / 'polydigits_mmali.cfg'}",
          f"--run_dir={run}", f"--cache_dir={cache}", "--max_steps=2", "--batch_size=8",
          "--latent_dim=6", "--style_dim=2", "--data_multiplication=1", "--nojit_compile",
          "--log_every=1", "--checkpoint_every=2", "--sample_every=0"])
    _run([str(ROOT / "tools" / "export_onnx.py"), f"--run_dir={run}", f"--out={root / 'b'}",
          "--weights=raw", "--graphs=translate_subset_to_m4,translate_m0_to_m4"])
    ds = data.load("polydigits", {"cache_dir": str(cache), "data_multiplication": 1})
    return load_trained(str(run)).model, Bundle(root / "b"), ds


def _expected(model, bundle: Bundle, xs: dict, seed: int) -> np.ndarray:
    """decode_m4([prior style | sample of the subset's default fusion]) in TensorFlow, with
    the runtime's noise draws (content noise, then style noise)."""
    n = len(next(iter(xs.values())))
    rng = np.random.default_rng(seed)
    noise = bundle.noise((n, model.layout.content_dim), rng)
    style_noise = bundle.noise((n, model.layout.style_dim), rng)
    mean, logvar = model.fuse({m: model.encode(m, tf.constant(x), ema=False)
                               for m, x in xs.items()})
    content = latent_lib.reparameterize(mean, logvar, tf.constant(noise))
    p_mean, p_logvar = model.prior_params()
    style = latent_lib.reparameterize(model.layout.style(p_mean), model.layout.style(p_logvar),
                                      tf.constant(style_noise))
    return model.decode("m4", model.layout.join(style, content), ema=False).numpy()


def test_polydigits_mmali_bundle_translates_from_any_subset_size(exported):
    model, bundle, ds = exported
    assert bundle.manifest["dataset"] == "polydigits"
    assert tuple(bundle.modalities) == tuple(f"m{k}" for k in range(5))
    assert model.default_fusion == "geometric" and model.layout.style_dim == 2
    rows = ds.test.pairs[:6]
    x = {m: ds.test.instances[m][rows[:, k]].astype(np.float32) / 255.0
         for k, m in enumerate(bundle.modalities)}
    assert x["m0"].shape == (6, 28, 28, 3)
    for sources in (("m1", "m3"), ("m0", "m2", "m3"), ("m0", "m1", "m2", "m3")):
        xs = {m: x[m] for m in sources}
        out = bundle.translate_from(xs, "m4", seed=len(sources))
        assert out.shape == (6, 28, 28, 3) and np.all(np.isfinite(out))
        np.testing.assert_allclose(out, _expected(model, bundle, xs, len(sources)), **TOL)
    # one source: the pairwise graph, same draws as translate()
    np.testing.assert_array_equal(bundle.translate_from({"m0": x["m0"]}, "m4", seed=3),
                                  bundle.translate("m0", "m4", x["m0"], seed=3))
    with pytest.raises(ValueError, match="translate_subset_to_m3"):
        bundle.translate_from({"m0": x["m0"], "m1": x["m1"]}, "m3")
