"""docs/fidelity.md's fixture table (sizes, iterations, kink margins) is generated from the
fixtures (tools/golden/fixture_table.py) and must match them."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from tools.golden import fixture_table  # noqa: E402


def test_fidelity_md_fixture_table_matches_the_fixtures():
    assert fixture_table.main(["--check"]) == 0, (
        "docs/fidelity.md's fixture table differs from tests/golden; run "
        "python tools/golden/fixture_table.py")
