"""Benchmark records name machine paths by role (bench/provenance.py), so docs show no host paths,
and name the setup they time (bench/reference_step.py)."""

from __future__ import annotations

import glob
import json
import os
import sys

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "bench"))
import provenance  # noqa: E402


def test_paths_become_roles_and_the_record_names_itself(tmp_path):
    command = ("python bench/reference_step.py --ref_python=/home/u/venv/bin/python "
               "--ref_scripts=/srv/shared/reference --mmali_src=/data/ref/6b5d+mmali "
               "--mmvae_src=/x/iffsid+mmvae/src --mmjsd_src=/opt/mmjsd --threads 1 "
               "--json /tmp/so/one.json")
    record = tmp_path / "rec.json"
    record.write_text(json.dumps({"command": command}))
    named = provenance.load_record(str(record))["command"]
    assert named == ("python bench/reference_step.py --ref_python=$REF_VENV/bin/python "
                     "--ref_scripts=$SHARED/reference --mmali_src=$SNAPSHOTS/6b5d+mmali "
                     "--mmvae_src=$SNAPSHOTS/iffsid+mmvae/src --mmjsd_src=$SNAPSHOTS/mmjsd "
                     f"--threads 1 --json {os.path.relpath(record, ROOT)}")
    assert provenance.by_role(named) == provenance.by_role(provenance.by_role(named))


def test_no_committed_record_renders_a_host_path():
    for path in glob.glob(os.path.join(ROOT, "bench", "results", "*.json")):
        command = provenance.load_record(path)["command"]
        assert not any(root in command for root in ("/work/", "/tmp/", "/home/", "/root/")), (
            path, command)


def test_every_reference_benchmark_names_its_setup():
    """Each `--models` choice of bench/reference_step.py has the setup its records store; the
    trimodal mmJSD one runs the authors' networks and text likelihood on our side."""
    import reference_step

    assert set(reference_step.BENCH_SETUPS) == set(reference_step.REFERENCE)
    specs = reference_step.text_specs()
    assert [(s.name, s.network, s.likelihood) for s in specs] == [
        ("mnist", "mnist_mlp", "laplace"), ("svhn", "mmjsd_svhn", "laplace"),
        ("text", "text_conv", "categorical_logratio")]
