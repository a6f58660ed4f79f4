"""Regenerate the golden fixtures under tests/golden/ from the authors' code.

Developer tool: run it with a Python that has torch (CPU) and NumPy, e.g.

    /work/refvenv/bin/python tools/golden/make_fixtures.py \\
        --mmali=/path/to/6b5d+mmali --mmvae=/path/to/iffsid+mmvae/src \\
        --mmjsd=/path/to/thomassutter+mmjsd --mvae=/path/to/mhw32+multimodal-vae-public \\
        --mopoe=/path/to/thomassutter+MoPoE --mmvaeplus=/path/to/epalu+mmvaeplus/src

Each --<repo> is an unmodified snapshot of the authors' public repository (never vendored into
this project). Cases whose repository is not given are skipped. Torch runs on one thread: its
multi-threaded CPU kernels split reductions by the number of cores, which moves the last bits
of the recorded values (and kink margins, hence possibly the drawn seed) from one machine to
the next; one thread gives the same bytes on every run of the same CPU kind.
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from tools.golden import torch_common  # noqa: E402

OUT = os.path.join(ROOT, "tests", "golden")


def add_poly_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--mopoe", help="snapshot of github.com/thomassutter/MoPoE")
    ap.add_argument("--mmvaeplus", help="src/ of a snapshot of github.com/epalu/mmvaeplus")


def write_poly_cases(args: argparse.Namespace) -> list[str]:
    """The MoPoE and MMVAE+ cases whose snapshots are given (paths written)."""
    written = []
    if args.mopoe:
        from tools.golden import mopoe_case
        written += [fx.write(args.out) for fx in mopoe_case.make_all(args.mopoe)]
    if args.mmvaeplus:
        from tools.golden import mmvae_plus_case
        written += [fx.write(args.out) for fx in mmvae_plus_case.make_all(args.mmvaeplus)]
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mmali", help="snapshot of github.com/6b5d/mmali")
    ap.add_argument("--mmvae", help="src/ of a snapshot of github.com/iffsid/mmvae")
    ap.add_argument("--mmjsd", help="snapshot of github.com/thomassutter/mmjsd")
    ap.add_argument("--mvae", help="snapshot of github.com/mhw32/multimodal-vae-public")
    add_poly_arguments(ap)
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # see the module doc
    written = []
    if args.mmali:
        torch_common.add_to_path(args.mmali)
        from tools.golden import mmali_case, sn_case
        for setup in mmali_case.CASES:
            fx = mmali_case.make(setup)
            fx.meta["commit"] = torch_common.repo_commit(args.mmali, fx.meta["commit"])
            written.append(fx.write(args.out))
        written.append(sn_case.make().write(args.out))
        written.append(mmali_case.write_checkpoint(args.out))
    if args.mmvae:
        from tools.golden import mmvae_case
        for fx in mmvae_case.make_all(args.mmvae):
            written.append(fx.write(args.out))
    if args.mmjsd:
        from tools.golden import mmjsd_case
        for fx in mmjsd_case.make_all(args.mmjsd):
            written.append(fx.write(args.out))
    if args.mvae:
        from tools.golden import mvae_case
        written += [fx.write(args.out) for fx in mvae_case.make_all(args.mvae)]
    written += write_poly_cases(args)
    for path in written:
        print(f"wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path) / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
