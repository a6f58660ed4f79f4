"""Every golden case was drawn so that no kink input lies within rounding of its kink.

tools/golden/kinks.py records, over the authors' forward passes of the whole case, the smallest
|x - kink| / scale (the scale of the input's rounding error) of every ReLU / LeakyReLU / clamp
/ abs / max input that requires grad and redraws the case until it is at least
`golden.KINK_MARGIN`; the fixture stores the result. A
fixture below the margin could pass or fail with the CPU's rounding (issue: a LeakyReLU input
of -5e-9 flipped sides between AVX2 and AVX-512 hosts).
"""

from __future__ import annotations

import glob
import json
import os

import pytest

from golden_fixtures import HERE
from mmali_tf.reference.golden import KINK_MARGIN

# fixtures that hold no gradient (forward values are continuous at a kink)
FORWARD_ONLY = {"mmali_mnist_svhn_decoders"}
CASES = sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(HERE, "*.json")))


@pytest.mark.parametrize("case", [c for c in CASES if c not in FORWARD_ONLY])
def test_kink_inputs_keep_the_margin(case):
    with open(os.path.join(HERE, case + ".json")) as f:
        meta = json.load(f)
    assert "kink_calls" in meta, f"{case}: the fixture records no kink margin; regenerate it"
    if meta["kink_calls"] == 0:  # a case without kinks (spectral-norm layers alone)
        return
    assert meta["kink_margin_min"] >= KINK_MARGIN, f"{case}: stated margin below {KINK_MARGIN}"
    assert meta["kink_margin"] >= KINK_MARGIN, (
        f"{case}: a kink input ({meta['kink_margin_at']}) is {meta['kink_margin']:.2e} x rms from "
        f"its kink, below {KINK_MARGIN}: its gradients depend on the CPU's rounding")
