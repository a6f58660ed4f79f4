"""docs/fidelity.md's fixture table, generated from tests/golden: every case's size, number of
training iterations and smallest kink margin.

    python tools/golden/fixture_table.py            # rewrite the block between the markers
    python tools/golden/fixture_table.py --check    # exit 1 when the block differs

`tests/golden/test_fixture_table.py` runs the check, so a fixture regenerated, added or
removed without the table following fails the suite. Needs neither torch nor TensorFlow.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN = os.path.join(ROOT, "tests", "golden")
DOC = os.path.join(ROOT, "docs", "fidelity.md")
BEGIN, END = "<!-- golden_fixtures:begin -->", "<!-- golden_fixtures:end -->"


def row(case: str) -> str:
    """One table row of fixture `case` (its .json and .npz under tests/golden)."""
    path = os.path.join(GOLDEN, case)
    with open(path + ".json") as f:
        meta = json.load(f)
    size = (os.path.getsize(path + ".npz") + os.path.getsize(path + ".json")) / 1e3
    iterations = meta.get("iterations", "-")
    margin = meta.get("kink_margin")
    if "kink_calls" not in meta:
        kinks = "forward only"
    elif margin is None:
        kinks = "no kink"
    else:
        kinks = f"{margin:.2e} ({meta['kink_margin_at']})"
    return f"| `{case}` | {size:,.0f} | {iterations} | {kinks} |"


def table() -> str:
    """The whole block, markers included."""
    cases = sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(GOLDEN, "*.json")))
    total = sum(os.path.getsize(os.path.join(GOLDEN, f"{c}{ext}"))
                for c in cases for ext in (".json", ".npz")) / 1e6
    lines = [BEGIN, "| Fixture | kB (npz + json) | Training iterations | Smallest kink margin "
             "(where) |", "|---|---|---|---|"]
    lines += [row(c) for c in cases]
    lines += ["", f"{len(cases)} fixtures, {total:.1f} MB in all.", END]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the block is stale")
    args = ap.parse_args(argv)
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        print(f"{os.path.relpath(DOC, ROOT)} has no {BEGIN} ... {END} block", file=sys.stderr)
        return 2
    head, rest = text.split(BEGIN, 1)
    new = head + table() + rest.split(END, 1)[1]
    if args.check:
        if new != text:
            print(f"{os.path.relpath(DOC, ROOT)}: the fixture table is stale; run "
                  "python tools/golden/fixture_table.py", file=sys.stderr)
            return 1
        return 0
    tmp = DOC + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(new)
    os.replace(tmp, DOC)
    return 0


if __name__ == "__main__":
    sys.exit(main())
