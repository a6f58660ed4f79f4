"""tf.distribute strategy creation for `--strategy=default|mirrored|multi_worker`.

`make_strategy` must run before TensorFlow initialises its devices (before any op runs):
splitting the CPU into logical devices for `--num_cpu_replicas` is impossible afterwards.
Models are built, compiled (which builds every optimizer) and fitted inside
`strategy.scope()`; the training pipeline is batched with the global batch size
(`--batch_size` * the model's draws per step) and `fit()` splits it over the replicas.
"""

from __future__ import annotations

from typing import Any, Callable

import tensorflow as tf

from mmali_tf.flags import STRATEGIES, FlagUsageError


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


def multi_worker_mode(strategy: tf.distribute.Strategy) -> bool:
    """True for a MultiWorkerMirroredStrategy whose TF_CONFIG names more than one task (the
    condition under which Keras reduces step outputs across workers with collectives)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    return bool(strategy.extended._in_multi_worker_mode())  # pylint: disable=protected-access


def xla_supported(strategy: tf.distribute.Strategy) -> bool:
    """False for a multi-worker job without GPUs: XLA does not compile the cross-worker
    collectives of a training step for CPU devices (TensorFlow b/194942685)."""
    return not (multi_worker_mode(strategy) and not tf.config.list_logical_devices("GPU"))


def replica_slice_draw(draw: Callable[[tf.Tensor], tf.Tensor], shape: Any,
                       batch_axis: int = 0) -> tf.Tensor:
    """`draw(shape)` made replica-aware: the global draw, this replica's slice of it.

    `draw` must give the same values on every replica (a random op seeded from state that all
    replicas share). With R replicas in sync, it is called with the batch axis R times
    longer and replica r keeps rows [r*n, (r+1)*n) of that axis. So replicas get different
    draws, and R replicas at batch n/R each see exactly the draws one replica at batch n sees
    for the same rows (the data is split over replicas the same way). With one replica this
    is `draw(shape)`.
    """
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync if context is not None else 1
    if replicas == 1:
        return draw(shape)
    shape = tf.convert_to_tensor(shape, tf.int32)
    local = shape[batch_axis]
    axis_mask = tf.one_hot(batch_axis, tf.size(shape), dtype=tf.int32)
    full = draw(shape + axis_mask * local * (replicas - 1))
    replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
    # tf.reshape (not the slice) gives the result the static shape that `shape` implies
    return tf.reshape(tf.slice(full, axis_mask * local * replica, shape), shape)
