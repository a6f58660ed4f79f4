"""How far an int8 bundle is from its float bundle (TensorFlow side: the coherence classifiers).

`fidelity_report(float_dir, int8_dir, ds, classifiers)` translates test instances of every
modality into every other through both bundles with the same seeded noise and reports, per
direction, the largest absolute output difference (in the modality's units: pixels in [0, 1]
for images) and the cross coherence of each bundle's translations (the share the target's
coherence classifier assigns to the source's label, as evaluation's cross coherence does),
plus the same largest difference over reconstructions and 256 joint generations (null when
the bundles lack those graphs). The export writes it into the int8 bundle's manifest
(`quantization.fidelity`).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from mmali_tf.export.runtime import Bundle
from mmali_tf.metrics.common import instance_batches, to_float

#: the bound: int8 coherence within this many percentage points of the float bundle's.
MAX_COHERENCE_CHANGE_POINTS = 2.0


def _predict(classifier: Any, y: np.ndarray) -> np.ndarray:
    return np.concatenate([classifier.predict(b) for b in instance_batches(y, 512)])


def fidelity_report(float_dir: str | os.PathLike, int8_dir: str | os.PathLike, ds: Any,
                    classifiers: Mapping[str, Any], split: str = "test",
                    limit: int | None = 2000, seed: int = 0) -> dict[str, Any]:
    """The int8 bundle's fidelity report against the float bundle (see the module docstring).

    Args:
      ds: the run's PairedDataset; `split` instances (at most `limit` per modality) are used.
      classifiers: modality -> coherence classifier (`predict(x) -> labels`).
    """
    ref, quant = Bundle(float_dir, mode="throughput"), Bundle(int8_dir, mode="throughput")
    data = ds.split(split)
    xs = {m: to_float(data.instances[m][:limit]) for m in ref.modalities}
    labels = {m: np.asarray(data.labels[m][:limit]) for m in ref.modalities}
    graphs = set(ref.manifest["graphs"]) & set(quant.manifest["graphs"])
    pairs, worst = {}, 0.0
    for src in ref.modalities:
        for dst in ref.modalities:
            if f"translate_{src}_to_{dst}" not in graphs:
                continue
            y_ref = ref.translate(src, dst, xs[src], seed=seed)
            y_q = quant.translate(src, dst, xs[src], seed=seed)
            err = float(np.abs(y_ref - y_q).max())
            c_ref = float(np.mean(_predict(classifiers[dst], y_ref) == labels[src]))
            c_q = float(np.mean(_predict(classifiers[dst], y_q) == labels[src]))
            pairs[f"{src}->{dst}"] = {
                "max_abs_error": err, "coherence_float": c_ref, "coherence_int8": c_q,
                "coherence_change_points": 100.0 * (c_q - c_ref)}
            worst = max(worst, err)
    recon = max((float(np.abs(ref.reconstruct(m, xs[m], seed=seed)
                              - quant.reconstruct(m, xs[m], seed=seed)).max())
                 for m in ref.modalities if f"reconstruct_{m}" in graphs), default=None)
    generate = None
    if "generate" in graphs:
        gen_ref, gen_q = ref.generate(256, seed=seed), quant.generate(256, seed=seed)
        generate = max(float(np.abs(gen_ref[m] - gen_q[m]).max()) for m in ref.modalities)
    change = max((abs(p["coherence_change_points"]) for p in pairs.values()), default=0.0)
    return {"split": split, "examples": {m: int(len(x)) for m, x in xs.items()}, "seed": seed,
            "translate": pairs, "max_abs_error_translate": worst,
            "max_abs_error_reconstruct": recon, "max_abs_error_generate_256": generate,
            "max_coherence_change_points": change,
            "coherence_within_2_points": bool(change <= MAX_COHERENCE_CHANGE_POINTS)}
