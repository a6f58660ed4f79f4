"""Sample grids from the MultimodalModel interface, and atomic PNG writing."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from mmali_tf import plots
from mmali_tf.data.specs import ModalitySpec
from mmali_tf.models.base import MultimodalModel

A = ModalitySpec("a", (4, 4, 1), "image", "mnist_mlp")
B = ModalitySpec("b", (4, 4, 1), "image", "mnist_mlp")
V = ModalitySpec("v", (16,), "vector", "feature_mlp")


class IdentityModel(MultimodalModel):
    """z = flatten(x) exactly (logvar 0) and x = reshape(z): a perfect auto-encoder."""

    registry_name = "identity_toy"

    def build_networks(self) -> None:
        self.deterministic = bool(self.config.get("deterministic", False))
        for s in self.specs:
            x = keras.Input(s.shape)
            out = keras.layers.Flatten()(x)
            if not self.deterministic:
                out = keras.layers.Lambda(lambda t: tf.concat([t, tf.zeros_like(t)], -1))(out)
            self.encoders[s.name] = keras.Model(x, out)
            z = keras.Input((16,))
            self.decoders[s.name] = keras.Model(z, keras.layers.Reshape(s.shape)(z))


def _cell_rows(grid: np.ndarray, n_rows: int, cell: int) -> list[np.ndarray]:
    """Pixel rows of every grid row, with the label margin cut off (right-aligned cells)."""
    width = 4 * (cell + plots.GAP)
    return [grid[plots.GAP + r * (cell + plots.GAP): plots.GAP + r * (cell + plots.GAP) + cell,
                 -width:] for r in range(n_rows)]


def _model(specs, style_dim=6, **cfg):
    return IdentityModel(specs, {"latent_dim": 16, "style_dim": style_dim, "ema_decay": 0.0, **cfg})


def test_grid_shape_rows_and_perfect_reconstruction():
    model = _model([A, B])
    rng = np.random.default_rng(0)
    batch = {m: rng.random((5, 4, 4, 1)).astype(np.float32) for m in ("a", "b")}
    grids = plots.sample_grids(model, batch, None, ncols=4)
    assert set(grids) == {"a", "b"}
    cell = 4 * 14  # 4 px upscaled to >= 56
    n_rows = 6     # original, recon, 2 cross, fused, prior
    for g in grids.values():
        assert g.dtype == np.uint8 and g.ndim == 3 and g.shape[2] == 3
        assert g.shape[0] == plots.GAP + n_rows * (cell + plots.GAP)
        rows = _cell_rows(g, n_rows, cell)
        np.testing.assert_array_equal(rows[1], rows[0])       # recon == original
        assert not np.array_equal(rows[-1], rows[0])          # prior samples differ
        # the label margin holds dark text pixels
        assert g[:, : g.shape[1] - 4 * (cell + plots.GAP)].min() < 128
    # Same inputs -> same grids (fixed noise from a fixed seed).
    again = plots.sample_grids(model, batch, None, ncols=4)
    np.testing.assert_array_equal(again["a"], grids["a"])


def test_cross_rows_with_no_style_equal_source_and_deterministic_has_no_fused_row():
    model = _model([A, B], style_dim=0)
    rng = np.random.default_rng(1)
    batch = {m: rng.random((4, 4, 4, 1)).astype(np.float32) for m in ("a", "b")}
    noise = model.sample_prior(4, seed=keras.random.SeedGenerator(3))
    g = plots.sample_grids(model, batch, noise, ncols=4)["a"]
    rows = _cell_rows(g, 6, 56)
    src = plots.sample_grids(model, batch, noise, ncols=4)["b"]
    # content is all of z: "b content" rows of grid a reproduce b's originals.
    np.testing.assert_array_equal(rows[2], _cell_rows(src, 6, 56)[0])
    det = _model([A, B], style_dim=0, deterministic=True)
    assert plots.sample_grids(det, batch, noise, ncols=4)["a"].shape[0] == \
        plots.GAP + 5 * (56 + plots.GAP)


def test_vector_modality_and_bad_input():
    model = _model([A, V])
    rng = np.random.default_rng(2)
    batch = {"a": rng.random((3, 4, 4, 1)).astype(np.float32),
             "v": rng.normal(size=(3, 16)).astype(np.float32) * 5}
    grids = plots.sample_grids(model, batch, None, ncols=3)
    assert grids["v"].shape[2] == 3
    rows = _cell_rows(grids["v"], 6, 56)
    np.testing.assert_array_equal(rows[1][:, -3 * (56 + plots.GAP):], rows[0][:, -3 * (56 + plots.GAP):])
    with pytest.raises(ValueError, match="lacks modalities"):
        plots.sample_grids(model, {"a": batch["a"]}, None)


def test_save_png_atomic_roundtrip(tmp_path):
    img = np.zeros((5, 7, 3), np.uint8)
    img[1, 2] = (10, 200, 30)
    path = tmp_path / "sub" / "grid.png"
    plots.save_png(img, path)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), img)
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]
    with pytest.raises(ValueError, match="uint8"):
        plots.save_png(img.astype(np.float32), path)
