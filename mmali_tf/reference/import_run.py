"""Turn an authors' PyTorch checkpoint into a normal run directory (tools/import_reference.py).

`read_checkpoint` reads a `.pt`/`.pth` (needs torch) or an `.npz` of its state_dict;
`write_run` builds the model from the run's flags, imports the weights (all checked first) and
writes flags.txt, run.json and one checkpoint into a temporary sibling directory that is renamed
onto `run_dir` only when complete, so a failed import leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from typing import Any, Mapping

import numpy as np

from mmali_tf.config import SeedSettings

#: top-level keys of the authors' training checkpoints (6b5d/mmali `save_checkpoint`)
MODEL_KEY, EMA_KEY, STEP_KEY = "model", "model_ema", "n_iter"
#: the model's key in mhw32/multimodal-vae-public's `save_checkpoint` dict (MVAE)
STATE_DICT_KEY = "state_dict"


def _split(flat: Mapping[str, Any]) -> tuple[dict, dict | None, int]:
    """(state, ema_state or None, step) of a flat {name: array} or a {'model': {...}} dict."""
    if isinstance(flat.get(MODEL_KEY), Mapping):
        ema = flat.get(EMA_KEY)
        return dict(flat[MODEL_KEY]), None if ema is None else dict(ema), int(flat.get(STEP_KEY, 0))
    prefixed = {k for k in flat if k.startswith((MODEL_KEY + "/", EMA_KEY + "/"))}
    if prefixed:
        state = {k[len(MODEL_KEY) + 1:]: v for k, v in flat.items()
                 if k.startswith(MODEL_KEY + "/")}
        ema = {k[len(EMA_KEY) + 1:]: v for k, v in flat.items() if k.startswith(EMA_KEY + "/")}
        step = int(np.asarray(flat[STEP_KEY])) if STEP_KEY in flat else 0
        return state, ema or None, step
    return {k: v for k, v in flat.items() if k != STEP_KEY}, None, 0


def read_checkpoint(path: str) -> tuple[dict, dict | None, int]:
    """(state_dict as arrays, EMA state_dict or None, step) of an authors' checkpoint.

    `.npz`: either a plain state_dict or keys `model/<name>`, `model_ema/<name>`, `n_iter`.
    `.pt` / `.pth` / `.pth.tar`: what `torch.save` wrote (a state_dict, or the authors'
    training dict: {'model', 'model_ema', 'n_iter', ...} or MVAE's {'state_dict', ...}).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--checkpoint={path}: no such file")
    if path.endswith(".npz"):
        try:
            with np.load(path) as z:
                return _split({k: z[k] for k in z.files})
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
            raise ValueError(f"--checkpoint={path}: cannot be read completely "
                             f"({type(error).__name__}: {error}); is the file cut short?"
                             ) from None
    if path.endswith((".pt", ".pth", ".tar", ".rar")):
        try:
            import torch
        except ImportError:
            raise ValueError(f"--checkpoint={path}: reading a PyTorch file needs torch; "
                             "save its state_dict as .npz (numpy.savez) instead") from None
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except (OSError, EOFError, RuntimeError, ValueError) as error:
            raise ValueError(f"--checkpoint={path}: cannot be read completely "
                             f"({type(error).__name__}: {str(error)[:200]}); is the file cut "
                             "short?") from None

        def arrays(d):
            return {k: v.detach().cpu().numpy() for k, v in d.items() if hasattr(v, "numpy")}
        if isinstance(obj, Mapping) and isinstance(obj.get(STATE_DICT_KEY), Mapping):
            return arrays(obj[STATE_DICT_KEY]), None, 0
        if isinstance(obj, Mapping) and isinstance(obj.get(MODEL_KEY), Mapping):
            ema = obj.get(EMA_KEY)
            return (arrays(obj[MODEL_KEY]), None if ema is None else arrays(ema),
                    int(obj.get(STEP_KEY, 0)))
        if isinstance(obj, Mapping):
            return arrays(obj), None, 0
        raise ValueError(f"--checkpoint={path}: holds a {type(obj).__name__}, expected a "
                         "state_dict or a dict with 'model'")
    raise ValueError(f"--checkpoint={path}: expected a .pt/.pth file or an .npz")


def specs_for(config: Mapping[str, Any]):
    """Modality specs of the run's dataset (without its data where they are fixed)."""
    name = config["dataset"]
    if name == "mnist_svhn":
        from mmali_tf.data.svhn import MNIST, SVHN
        return (MNIST, SVHN)
    if name == "digits":
        from mmali_tf.data.digits import HAND, PRINT
        return (HAND, PRINT)
    if name == "mnist_label":
        from mmali_tf.data.mnist_label import DIGIT, IMAGE
        return (IMAGE, DIGIT)
    from mmali_tf import data
    return data.load(name, config).specs


def write_run(config: Mapping[str, Any], checkpoint: str) -> str:
    """Import `checkpoint` into a new run directory `config['run_dir']`; returns a summary."""
    import keras

    from mmali_tf import models
    from mmali_tf import run_dir as run_dir_lib
    from mmali_tf.reference.mappings import import_state_dict

    root = config["run_dir"]
    if os.path.exists(root) and (not os.path.isdir(root) or os.listdir(root)):
        raise ValueError(f"--run_dir={root}: exists and is not empty; imports go to a new "
                         "directory")
    state, ema_state, step = read_checkpoint(checkpoint)
    keras.utils.set_random_seed(SeedSettings.from_config(config).seed)
    specs = specs_for(config)
    model = models.build(config["model"], specs, config)
    model.build_from_specs()
    model.compile()
    if ema_state is not None and model.ema is None:
        ema_state = None  # the run has no EMA (--ema_decay=0): use the raw weights only
    import_state_dict(model, state, ema_state)
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".import-", dir=parent)
    try:
        run = run_dir_lib.prepare(tmp, config)
        run_dir_lib.TrainingCheckpoint(run.checkpoints, model).save(step)
        run_dir_lib.write_run_files(run, dict(config), specs)
        if os.path.isdir(root):
            os.rmdir(root)  # empty (checked above)
        os.replace(tmp, root)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    ema = "with EMA weights" if ema_state is not None else "without EMA weights"
    return f"imported {checkpoint} (step {step}, {ema}) into {root}"
