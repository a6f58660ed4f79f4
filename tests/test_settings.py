"""Typed settings (`mmali_tf.config`): one default per setting, the same settings from Python
and from the command line for every registered model, and run directories written by the
previous release still load."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import shutil

import pytest
from absl import flags
from absl.testing import flagsaver

from conftest import HAND, PRINT, ROOT
from mmali_tf import cli, config, models, registry, run_dir, train
from mmali_tf import flags as flags_lib
from mmali_tf.data.specs import ModalitySpec

#: flags.txt and run.json of runs written by the release before typed settings (commit
#: 44f178b: `python -m mmali_tf.train --flagfile=configs/digits_<model>.cfg --max_steps=1`).
OLD_RUNS = os.path.join(ROOT, "tests", "fixtures", "runs_44f178b")
#: settings added since those runs, at the defaults that keep an old run's behaviour
ADDED_SINCE = {"mmjsd_kl_epoch_steps": 0, "keep_checkpoint_every": 0,
               "text_likelihood": "categorical"}


def _parsed_config(*args: str) -> dict:
    flags_lib.define_train_flags()
    with flagsaver.flagsaver():
        cli.parse_flags(["mmali-train", *args])
        out = train.config_from_flags()
        flags.FLAGS.unparse_flags()
    return out


# the --style_dim default (10, mmALI's) is ignored, with this warning, by models without a style
# subspace; both builds below see it
@pytest.mark.filterwarnings("ignore:model .* has no style subspace:UserWarning")
@pytest.mark.parametrize("name", registry.names("model"))
def test_python_and_command_line_build_the_same_settings(name):
    """A model built from Python with nothing set reads what `--model=<name>` trains."""
    cli_config = _parsed_config(f"--model={name}")
    assert train.make_config(model=name) == cli_config
    python_model = models.build(name, [HAND, PRINT], {})
    cli_model = models.build(name, [HAND, PRINT], cli_config)
    assert type(cli_model.settings) is registry.settings_class("model", name)
    assert models.model_class(name).settings_class is registry.settings_class("model", name)
    assert python_model.settings == cli_model.settings
    assert python_model.variant == cli_model.variant == name


def test_every_training_flag_is_a_settings_field_with_its_default():
    flags_lib.define_train_flags()
    fields = {f.name: f for cls in (*config.DRIVER_SETTINGS,
                                    *(cls for _, cls in registry.settings_classes()))
              for f in cls.fields()}
    assert set(fields) == set(flags_lib.train_flag_names())
    for name, field in fields.items():
        default = flags.FLAGS[name].default
        assert (tuple(default) if isinstance(default, list) else default) == field.default, name


def test_a_setting_declared_twice_differently_is_refused():
    flags_lib.define_train_flags()

    @dataclasses.dataclass(frozen=True)
    class Other(config.Settings):
        seed: int = config.setting(1, "Another seed.")

    with pytest.raises(registry.RegistryError, match="flag --seed is declared twice with "
                                                     "different definitions"):
        flags_lib._define_settings(Other, "a plugin")


def test_from_config_fills_defaults_and_types_values():
    from mmali_tf.models.vae.settings import MVAESettings

    settings = MVAESettings.from_config({"beta": 2, "amsgrad": "false", "unknown": 1})
    assert (settings.beta, settings.amsgrad, settings.ema_decay, settings.init) == (
        2.0, False, 0.9999, "normal")
    assert isinstance(settings.beta, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.beta = 3.0


def test_models_read_settings_fields_not_config_get():
    offenders = []
    for root, _, files in os.walk(os.path.join(ROOT, "mmali_tf", "models")):
        for f in (f for f in files if f.endswith(".py")):
            path = os.path.join(root, f)
            with open(path, encoding="utf-8") as src:
                tree = ast.parse(src.read(), path)
            offenders += [f"{path}:{node.lineno}" for node in ast.walk(tree)
                          if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                          and node.func.attr == "get" and "config" in ast.unparse(node.func.value)]
    assert not offenders, offenders


@pytest.mark.parametrize("run", sorted(os.listdir(OLD_RUNS)))
def test_run_directories_of_the_previous_release_load(run, tmp_path):
    source = os.path.join(OLD_RUNS, run)
    with open(os.path.join(source, "run.json"), encoding="utf-8") as f:
        record = json.load(f)
    old = record["config"]
    # its flags.txt replays to its run.json, and that is still a valid config
    assert _parsed_config(f"--flagfile={os.path.join(source, 'flags.txt')}") == {
        **old, **ADDED_SINCE}
    assert train.make_config(old) == {**old, **ADDED_SINCE}
    # the model reads the recorded values
    specs = [ModalitySpec.from_dict(d) for d in record["specs"]]
    model = models.build(old["model"], specs, old)
    for field in model.settings.fields():
        assert getattr(model.settings, field.name) == config.coerce(field, old[field.name])
    # evaluation and export rebuild it through load_trained
    root = tmp_path / "run"
    shutil.copytree(source, root)
    model.build_from_specs()
    run_dir.TrainingCheckpoint(str(root / "checkpoints"), model, optimizers=False).save(1)
    trained = run_dir.load_trained(str(root))
    assert (trained.step, trained.dataset_name) == (1, old["dataset"])
    assert trained.model.settings == model.settings
    assert [v.numpy().tolist() for v in trained.model.encoders[specs[0].name].weights[:1]] == [
        v.numpy().tolist() for v in model.encoders[specs[0].name].weights[:1]]
