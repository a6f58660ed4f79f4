"""Registries as the single source of truth.

* A throwaway module (BUILD.md's example plugin, written to a temporary directory) declares a
  network family, a fusion method, a dataset and a model; they are trained, evaluated and
  exported with no file of the repository touched.
* Flag choices, run-dir shape flags, configs and README's tables agree with the registries.
* Declarations are read without importing TensorFlow, and bad ones are one-line errors.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver

from conftest import ROOT
from mmali_tf import cli, data, registry, run_dir, train
from mmali_tf import flags as flags_lib

PLUGIN = "toy_plugin"
WATCHED = ("mmali_tf", "tools", "configs", "bench", "README.md", "BUILD.md",
           "pyproject.toml")


def build_md_plugin() -> str:
    """The example plugin module of BUILD.md (between its example-plugin markers)."""
    with open(os.path.join(ROOT, "BUILD.md"), encoding="utf-8") as f:
        text = f.read()
    block = re.search(r"<!-- example-plugin:begin -->\s*```python\n(.*?)```\s*"
                      r"<!-- example-plugin:end -->", text, re.S)
    assert block, "BUILD.md lost its example plugin"
    return block.group(1)


def repo_snapshot() -> dict[str, tuple[int, int]]:
    out = {}
    for top in WATCHED:
        path = os.path.join(ROOT, top)
        files = [path] if os.path.isfile(path) else [
            os.path.join(d, f) for d, dirs, names in os.walk(path)
            for f in names if "__pycache__" not in d]
        out.update({p: (os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in files})
    return out


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """BUILD.md's plugin as tmp_path/toy_plugin.py on sys.path; the registries and the flags
    it adds are restored afterwards."""
    (tmp_path / f"{PLUGIN}.py").write_text(build_md_plugin())
    monkeypatch.syspath_prepend(str(tmp_path))
    flags_lib.define_train_flags()
    monkeypatch.setattr(registry, "_tables", copy.deepcopy(registry._all()))
    monkeypatch.setattr(registry, "_plugins", [])
    before = set(flags.FLAGS)
    names = list(flags_lib.train_flag_names())
    yield tmp_path
    for name in set(flags.FLAGS) - before:
        delattr(flags.FLAGS, name)
        flags_lib._declared.pop(name, None)
    flags_lib._TRAIN_FLAG_NAMES[:] = names
    sys.modules.pop(PLUGIN, None)


@pytest.mark.slow
def test_throwaway_plugin_trains_evaluates_and_exports(plugin, tmp_path):
    from mmali_tf.export.runtime import Bundle
    from mmali_tf import evaluate
    from mmali_tf.metrics import classifiers

    before = repo_snapshot()
    # the CLI parse knows the plugin's model, dataset and flags (read before parsing)
    with flagsaver.flagsaver():
        cli.parse_flags(["mmali-train", f"--plugins={PLUGIN}", "--model=toy_vae",
                         "--dataset=toy_cam", "--toy_vae_beta=0.5", "--toy_cam_per_class=6"])
        assert (flags.FLAGS.model, flags.FLAGS.toy_vae_beta) == ("toy_vae", 0.5)
        assert "toy_vae" in flags.FLAGS["model"].help
        flags.FLAGS.unparse_flags()
    root = str(tmp_path / "run")
    config = train.make_config(
        plugins=[PLUGIN], model="toy_vae", dataset="toy_cam", run_dir=root, max_steps=4,
        batch_size=8, log_every=2, checkpoint_every=2, sample_every=4, jit_compile=False,
        latent_dim=6, style_dim=0, ema_decay=0.99, ema_start=0, toy_vae_beta=0.5,
        cache_dir=str(tmp_path / "cache"))
    result = train.train(config, verbose=0)
    assert (result.final_step, result.diverged) == (4, "")
    assert os.path.exists(os.path.join(root, "samples", "step_0000004_cam.png"))

    trained = run_dir.load_trained(root)
    assert type(trained.model).__name__ == "ToyVAE" and trained.model.registry_name == "toy_vae"
    ds = data.load(trained.dataset_name, trained.config)
    assert classifiers.architecture(ds.spec("cam")) == "conv"
    opts = evaluate.EvalOptions(num_samples=40, probe_epochs=1, classifier_epochs=1,
                                iwae_samples=2, ll_items=8, cache_dir=str(tmp_path / "cache"))
    metrics, figures = evaluate.evaluate_model(trained.model, ds, opts, step=trained.step)
    evaluate.write_outputs(os.path.join(root, "eval"), metrics, figures)
    assert set(metrics["cross_coherence"]) == {"cam->mark", "mark->cam"}
    assert "mean_expert" in metrics["synergy_coherence"]
    assert metrics["meta"]["default_fusion"] == "mean_expert"

    # a fresh process finds the plugin through the run's recorded --plugins
    bundle_dir = str(tmp_path / "bundle")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), ROOT]),
           "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "export_onnx.py"), f"--run_dir={root}",
         f"--out={bundle_dir}", "--graphs=translate_mark_to_cam,generate,fuse_mean_expert"],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    bundle = Bundle(bundle_dir)
    assert "mean_expert" in bundle.manifest["fusion_methods"]
    marks = np.random.default_rng(0).uniform(0, 1, (3, 16, 16, 1)).astype(np.float32)
    cams = bundle.translate("mark", "cam", marks, seed=0)
    assert cams.shape == (3, 48, 48, 3) and np.all((cams >= 0) & (cams <= 1))
    assert repo_snapshot() == before


@pytest.mark.slow
def test_readme_python_quick_start_runs(tmp_path, monkeypatch):
    """README's Python snippet, as written, with tiny sizes patched into its calls."""
    from mmali_tf.export import onnx_export
    from mmali_tf import evaluate

    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        code = re.search(r"### The same from Python\n\n```python\n(.*?)```", f.read(),
                         re.S).group(1)
    cache = str(tmp_path / "cache")
    tiny = dict(max_steps=2, batch_size=8, latent_dim=4, jit_compile=False, log_every=1,
                checkpoint_every=2, sample_every=0, digits_print_per_class=20,
                data_multiplication=1, cache_dir=cache)
    make_config = train.make_config
    monkeypatch.setattr(train, "make_config",
                        lambda overrides=None, **kw: make_config({**dict(overrides or {}),
                                                                  **kw, **tiny}))
    monkeypatch.setattr(evaluate, "EvalOptions", functools.partial(
        evaluate.EvalOptions, num_samples=20, probe_epochs=1, classifier_epochs=1,
        iwae_samples=2, ll_items=4, cache_dir=cache))
    monkeypatch.setattr(onnx_export, "export_bundle", functools.partial(
        onnx_export.export_bundle, graphs=["translate_hand_to_print"]))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 (our own README)
    assert namespace["result"].final_step == 2
    assert set(namespace["metrics"]["cross_coherence"]) == {"hand->print", "print->hand"}
    assert os.path.exists(tmp_path / "runs" / "api_mvae" / "eval" / "metrics.json")
    assert namespace["bundle"].manifest["model"]["name"] == "mvae"


def test_plugin_flags_replay_and_bad_plugins_are_one_line(plugin, tmp_path):
    flagfile = tmp_path / "exp.cfg"
    flagfile.write_text(f"--plugins={PLUGIN}\n--dataset=toy_cam\n--toy_cam_per_class=3\n")
    with flagsaver.flagsaver():
        cli.parse_flags(["mmali-train", f"--flagfile={flagfile}", "--model=toy_vae"])
        config = train.config_from_flags()
        flags.FLAGS.unparse_flags()
    assert config["plugins"] == [PLUGIN] and config["toy_cam_per_class"] == 3
    text = run_dir.format_flags(config)
    assert f"--plugins={PLUGIN}\n" in text and "--toy_vae_beta=1.0\n" in text
    with pytest.raises(ValueError, match="--toy_cam_per_class=3: --dataset=digits does not"):
        train.make_config(plugins=[PLUGIN], toy_cam_per_class=3)
    bad = tmp_path / "bad_plugin.py"
    bad.write_text("from mmali_tf.registry import register_model\nNAME = 'x'\n\n"
                   "@register_model(NAME)\nclass X:\n    pass\n")
    with pytest.raises(ValueError, match=r"bad_plugin.py:4: register_model\(\.\.\.\) needs "
                                         "literal arguments"):
        train.make_config(plugins=["bad_plugin"])
    (tmp_path / "empty_plugin.py").write_text("X = 1\n")
    with pytest.raises(ValueError, match="empty_plugin: .* declares no model"):
        train.make_config(plugins=["empty_plugin"])
    (tmp_path / "clash_plugin.py").write_text(
        "from mmali_tf.registry import register_dataset\n\n"
        "@register_dataset('digits')\ndef load(config):\n    pass\n")
    with pytest.raises(ValueError, match="dataset 'digits' is declared twice"):
        train.make_config(plugins=["clash_plugin"])


def test_declarations_are_read_without_tensorflow_and_match_the_decorators():
    code = ("import sys; from mmali_tf import flags, registry, run_dir; "
            "flags.define_train_flags(); from mmali_tf.data.specs import ModalitySpec; "
            "ModalitySpec('x', (4,), 'vector', 'feature_mlp'); "
            "print(len(registry.names('model')), 'tensorflow' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout.split() == [str(len(registry.names("model"))), "False"], proc.stderr
    before = {k: dict(registry.entries(k)) for k in registry.KINDS}
    for kind in registry.KINDS:
        for name, entry in before[kind].items():
            obj = entry.load()      # imports the module: its decorators run and must agree
            if kind == "model":
                assert obj.registry_name in registry.names("model"), name
            if kind == "network":
                assert callable(obj.encoder) and callable(obj.check_spec)
    assert {k: dict(registry.entries(k)) for k in registry.KINDS} == before


def test_flag_choices_and_shape_flags_come_from_the_registries():
    flags_lib.define_train_flags()
    assert flags.FLAGS["model"].parser.enum_values == list(registry.names("model"))
    assert flags.FLAGS["dataset"].parser.enum_values == list(registry.names("dataset"))
    for name in registry.names("model"):
        assert name in flags.FLAGS["model"].help
    assert run_dir.shape_flags("mmvae", "features") == (
        "model", "dataset", "latent_dim", "style_dim", "amsgrad", "learn_prior", "posterior",
        "features_file")
    assert "spectral_norm" in run_dir.shape_flags("mmali_joint", "digits")
    with pytest.raises(ValueError, match="network 'nope' is not one of"):
        data.ModalitySpec("x", (4,), "vector", "nope")


def test_every_registered_model_has_a_digits_config():
    for name, entry in registry.entries("model").items():
        path = os.path.join(ROOT, "configs", f"digits_{name}.cfg")
        assert entry.builtin and os.path.exists(path), f"{name}: no configs/digits_{name}.cfg"
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        assert f"--model={name}" in lines and "--dataset=digits" in lines, path
        config = train.make_config({ln[2:].split("=", 1)[0]: ln.split("=", 1)[1]
                                    for ln in lines if ln.startswith("--") and "=" in ln})
        assert config["model"] == name


def _readme_table_names(section: str) -> set[str]:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in body.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([a-z0-9_]+)`", row.split("|")[1])}


def test_readme_tables_list_exactly_the_registered_models_and_datasets():
    assert _readme_table_names("Models") == set(registry.names("model"))
    assert _readme_table_names("Datasets") == set(registry.names("dataset"))
