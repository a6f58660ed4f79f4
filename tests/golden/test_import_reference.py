"""tools/import_reference.py's core: an authors' state_dict (.npz) becomes a run directory whose
decoders (the evaluate path, `load_trained`) reproduce the authors' decoder outputs; a
misshaped tensor fails with one line naming it and both shapes, and writes nothing."""

from __future__ import annotations

import os

import numpy as np
import pytest

from golden_fixtures import Fixture
from mmali_tf import cli
from mmali_tf.reference import golden
from mmali_tf.reference.import_run import write_run
from mmali_tf.run_dir import load_trained


def authors_state(fx: Fixture) -> dict[str, np.ndarray]:
    shapes = [(k, tuple(s)) for k, s in fx.meta["weight_shapes"]]
    return {**golden.seeded_weights(shapes, fx.meta["seed"]), **fx.group("sn_start/")}


def config(run_dir: str) -> dict:
    fx_config = Fixture("mmali_mnist_svhn_decoders").meta["config"]
    return dict(fx_config, run_dir=run_dir, seed=0, ema_decay=0.0, keep_checkpoints=1)


def test_imported_run_decodes_like_the_authors(tmp_path):
    fx = Fixture("mmali_mnist_svhn_decoders")
    ckpt = tmp_path / "authors.npz"
    np.savez(ckpt, **{f"model/{k}": v for k, v in authors_state(fx).items()}, n_iter=7)
    run_dir = str(tmp_path / "run")
    write_run(config(run_dir), str(ckpt))
    trained = load_trained(run_dir)
    assert trained.step == 7
    want = fx.group("decoded/")
    for m in trained.model.modalities:
        np.testing.assert_allclose(trained.model.decode(m, want["z"]).numpy(), want[m],
                                   rtol=1e-5, atol=1e-6, err_msg=f"decoder {m}")


def test_misshaped_tensor_fails_in_one_line_and_writes_nothing(tmp_path, capsys):
    fx = Fixture("mmali_mnist_svhn_decoders")
    state = authors_state(fx)
    key = "decoders.1svhn.model.1.weight"
    state[key] = state[key][:, :16]
    ckpt = tmp_path / "bad.npz"
    np.savez(ckpt, **state)
    run_dir = str(tmp_path / "run")
    with pytest.raises(SystemExit) as stop, cli.user_errors():
        write_run(config(run_dir), str(ckpt))
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and key in err, err
    assert "(20, 16, 4, 4)" in err and "(4, 4, 128, 20)" in err, err  # theirs, ours
    assert not os.path.exists(run_dir) and os.listdir(tmp_path) == ["bad.npz"]


def test_linear_weight_for_a_convolution_fails_in_one_line(tmp_path, capsys):
    """A Linear weight where our network has a convolution (e.g. an MLP checkpoint for a
    convnet modality) names the tensor and both shapes instead of failing in a transpose."""
    fx = Fixture("mmali_mnist_svhn_decoders")
    state = authors_state(fx)
    key = "encoders.1svhn.module.model.0.weight"
    state[key] = state[key].reshape(32, -1)
    ckpt = tmp_path / "mlp.npz"
    np.savez(ckpt, **state)
    with pytest.raises(SystemExit) as stop, cli.user_errors():
        write_run(config(str(tmp_path / "run")), str(ckpt))
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and key in err and "(32, 48)" in err, err
