"""tf.distribute strategy creation for `--strategy=default|mirrored|multi_worker`.

`make_strategy` must run before TensorFlow initialises its devices (before any op runs):
splitting the CPU into logical devices for `--num_cpu_replicas` is impossible afterwards.
Models are built, compiled (which builds every optimizer) and fitted inside
`strategy.scope()`; the training pipeline is batched with the global batch size
(`--batch_size` * the model's draws per step) and `fit()` splits it over the replicas.
What a `train_step` needs to know about replicas lives with the models
(`models.draws.replica_slice_draw`, `models.base.multi_worker_mode`): the models never import
this driver module.
"""

from __future__ import annotations

import tensorflow as tf

from mmali_tf.config import STRATEGIES
from mmali_tf.flags import FlagUsageError
from mmali_tf.models.base import multi_worker_mode


def split_cpu(num_devices: int) -> list[str]:
    """Split the first physical CPU into `num_devices` logical CPUs; returns their names.

    Raises FlagUsageError if TensorFlow already initialised its devices.
    """
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)])
    except RuntimeError as error:
        current = len(tf.config.list_logical_devices("CPU"))
        if current == num_devices:
            return [d.name for d in tf.config.list_logical_devices("CPU")]
        raise FlagUsageError(
            f"--num_cpu_replicas={num_devices}: TensorFlow already initialised {current} CPU "
            f"device(s); the split must happen before any TensorFlow op runs ({error})") from None
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def make_strategy(name: str, num_cpu_replicas: int = 0) -> tf.distribute.Strategy:
    """The tf.distribute strategy for `--strategy=name`.

    `mirrored` uses every visible GPU; without GPUs it uses `num_cpu_replicas` logical CPU
    devices (split here) or the single CPU. `multi_worker` reads the cluster from TF_CONFIG.
    """
    if name not in STRATEGIES:
        raise FlagUsageError(f"--strategy={name}: expected one of {', '.join(STRATEGIES)}")
    if num_cpu_replicas and name != "mirrored":
        raise FlagUsageError(f"--num_cpu_replicas={num_cpu_replicas} needs --strategy=mirrored")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if num_cpu_replicas:
            print(f"note: {len(gpus)} GPU(s) visible; --num_cpu_replicas={num_cpu_replicas} "
                  "is ignored", flush=True)
        return tf.distribute.MirroredStrategy()
    if num_cpu_replicas > 1:
        return tf.distribute.MirroredStrategy(split_cpu(num_cpu_replicas))
    return tf.distribute.MirroredStrategy(["/cpu:0"])


def check_global_batch(strategy: tf.distribute.Strategy, batch_size: int) -> None:
    """Raise FlagUsageError unless every replica gets the same whole share of a draw."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise FlagUsageError(f"--batch_size={batch_size}: must be divisible by the "
                             f"{replicas} replicas of the strategy")


def worker_suffix(strategy: tf.distribute.Strategy) -> str | None:
    """None on the chief (and without a cluster); `<task_type>_<task_id>` on other workers.

    Under `multi_worker` every worker runs the callbacks (all workers save checkpoints
    together), so non-chief workers write into a scratch directory, removed after training,
    and resume from the chief's checkpoints (`train.prepare`).
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if resolver is None or task_type in (None, "chief"):
        return None
    task_id = int(resolver.task_id or 0)
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    if task_type == "worker" and task_id == 0 and not has_chief:
        return None
    return f"{task_type}_{task_id}"


def no_xla_reason(strategy: tf.distribute.Strategy) -> str:
    """Why XLA cannot compile the training step under `strategy` ("" when it can).

    Keras compiles the whole step, `strategy.run` included, as one XLA function, which cannot
    reach variables on several devices of one process ("Trying to access resource ...
    located in device CPU:1 from device CPU:0"; keras-team/keras#19005); and XLA does not
    compile the cross-worker collectives of a multi-worker step for CPUs (TensorFlow
    b/194942685).
    """
    mirrored = (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy)
    if isinstance(strategy, mirrored) and len(strategy.extended.worker_devices) > 1:
        return "XLA cannot compile a step whose variables are mirrored on several devices"
    if multi_worker_mode(strategy) and not tf.config.list_logical_devices("GPU"):
        return "XLA cannot compile the cross-worker collectives of a multi-worker step on CPUs"
    return ""
