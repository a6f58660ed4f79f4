"""Subset coherence on constructed three-modality cases with known answers, and its place in
metrics.json / report.md."""

from __future__ import annotations

import numpy as np
import pytest

from mmali_tf.data.specs import ModalitySpec, PairedDataset, PairedSplit
from mmali_tf.metrics import report
from mmali_tf.metrics.common import InferenceView, sample_rows
from mmali_tf.metrics.subset_coherence import subset_coherence
from test_metrics import ArgmaxClassifier, IdentityModel

SPECS = tuple(ModalitySpec(m, (10,), "vector", "feature_mlp", likelihood="normal")
              for m in ("a", "b", "c"))
CLFS = {m: ArgmaxClassifier() for m in ("a", "b", "c")}


class BlindC(IdentityModel):
    """Identity encoders/decoders, except that modality `c`'s encoder ignores its input:
    q(z|x_c) = N(0, I), while a and b are sharp (logvar -12) at the class code."""

    registry_name = "blind_c_test"

    def build_networks(self) -> None:
        super().build_networks()
        enc = self.encoders["c"]
        enc.set_weights([np.zeros_like(w) for w in enc.get_weights()])


class BlindCMixture(BlindC):
    registry_name = "blind_c_mixture_test"
    default_fusion = "moe_mean"


def _dataset(n_per_class: int = 40, seed: int = 0) -> PairedDataset:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), n_per_class)
    inst = {s.name: np.eye(10, dtype=np.float32)[labels] for s in SPECS}
    pairs = np.stack([np.arange(len(labels))] * 3, axis=1).astype(np.int32)
    split = PairedSplit(inst, {m: labels.copy() for m in inst}, pairs,
                        {m: np.arange(len(labels), dtype=np.int32) for m in inst})
    return PairedDataset("vec3", SPECS, split, split)


@pytest.mark.parametrize("model_cls, pair_ac", [(BlindC, 1.0), (BlindCMixture, 0.55)])
def test_known_answers_poe_like_fusion_and_mixture(model_cls, pair_ac):
    """{a}, {b}: perfect; {c}: chance. Pairs with c: the geometric mean is dominated by the
    sharp expert (perfect), a mixture sample comes from c half of the time (~0.55)."""
    ds = _dataset()
    view = InferenceView.of(model_cls(ds.specs), "raw")
    rows = sample_rows(ds.test.num_pairs, None, 0)
    out, hist = subset_coherence(view, CLFS, ds, "test", rows, batch_size=100, seed=0)
    sub = out["by_subset"]
    assert set(sub) == {"a", "b", "c", "a+b", "a+c", "b+c"}
    assert sub["a"] == 1.0 and sub["b"] == 1.0 and sub["a+b"] == 1.0
    assert abs(sub["c"] - 0.1) < 0.06
    assert abs(sub["a+c"] - pair_ac) < 0.07 and abs(sub["b+c"] - pair_ac) < 0.07
    assert out["by_size"]["1"] == pytest.approx(np.mean([sub["a"], sub["b"], sub["c"]]))
    assert out["by_size"]["2"] == pytest.approx(np.mean([sub["a+b"], sub["a+c"], sub["b+c"]]))
    # histograms per (size, target): every subset of that size without t adds its predictions
    assert set(hist) == {f"subset/{k}/{t}" for k in (1, 2) for t in "abc"}
    assert hist["subset/1/a"].sum() == 2 * len(rows) and hist["subset/2/a"].sum() == len(rows)
    # decoded from {b} alone, a is the label: every class gets at least its 1/10 of the rows
    assert hist["subset/1/a"].min() >= len(rows) // 10

class PointCodes(BlindC):
    """Deterministic encoders: the mean half of the identity encoder's output."""

    registry_name = "point_codes_test"
    deterministic = True

    def params_from_encoder_output(self, raw):
        return raw[:, :self.layout.latent_dim], None


def test_deterministic_models_score_single_inputs_only():
    ds = _dataset(n_per_class=5)
    out, hist = subset_coherence(InferenceView.of(PointCodes(ds.specs), "raw"), CLFS, ds,
                                 "test", sample_rows(ds.test.num_pairs, None, 0), 64, 0)
    assert set(out["by_size"]) == {"1"} and set(out["by_subset"]) == {"a", "b", "c"}
    assert set(hist) == {"subset/1/a", "subset/1/b", "subset/1/c"}


def test_schema_and_report_section():
    metrics = {"latent_accuracy": {"a": {"both": 0.5}}, "joint_coherence": {"all": 0.2},
               "cross_coherence": {"a->b": 0.3}, "synergy_coherence": {},
               "classifier_accuracy": {"a": 0.99}, "meta": {"notes": []},
               "subset_coherence": {"by_size": {"1": 0.25, "2": 0.5},
                                    "by_subset": {"a": 0.25, "a+b": 0.5}}}
    report.validate_metrics(metrics)
    text = report.render_report(metrics)
    assert "| any 2 | 50.00 |" in text and "| a+b | 50.00 |" in text
    metrics["subset_coherence"]["by_size"]["2"] = 1.5
    with pytest.raises(ValueError, match="subset_coherence/by_size/2"):
        report.validate_metrics(metrics)
