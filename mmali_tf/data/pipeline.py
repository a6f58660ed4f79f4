"""tf.data pipelines over a PairedDataset: infinite training batches, eval and unimodal batches.

Instances stay in memory as tensors; the pipelines move only indices and gather each batch in
a (batched) `map`. uint8 images become float32 in [0, 1]; float32 vectors pass through.
Training order is a fresh permutation of the pair indices every epoch, computed statelessly
from (seed, stream, epoch), so the stream is deterministic and `start_step=k` resumes at
element k in O(1) without replaying the first k elements.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from mmali_tf.data.augment import random_affine
from mmali_tf.data.specs import PairedDataset, PairedSplit

AUTOTUNE = tf.data.AUTOTUNE


def _finish(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Prefetch, without tf.data's default graph rewrites: they serialise the captured
    instance tensors (~1 s per iterator for MNIST-SVHN) and do not speed up a gather.

    Sharding over the workers of a multi-worker strategy is by data: every worker builds the
    same stream of global batches and keeps its replicas' contiguous slices of each (the data
    is in memory, there are no files to shard).
    """
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.prefetch(AUTOTUNE).with_options(options)


def _tensors(split: PairedSplit, modalities: tuple[str, ...]) -> dict[str, tf.Tensor]:
    return {m: tf.convert_to_tensor(split.instances[m]) for m in modalities}


def _as_float(x: tf.Tensor) -> tf.Tensor:
    if x.dtype == tf.uint8:
        return tf.cast(x, tf.float32) / 255.0
    return tf.cast(x, tf.float32)


def _epoch_positions(size: int, rows: int, seed: int, stream: int,
                     start_step: int) -> tf.data.Dataset:
    """Infinite int32 vectors (rows,) of positions in [0, size): epoch-wise permutations,
    remainder dropped, starting at global batch `start_step`."""
    per_epoch = size // rows
    if per_epoch == 0:
        raise ValueError(f"a batch of {rows} rows needs at least {rows} items to draw from, "
                         f"got {size}; lower --batch_size")
    start_epoch, offset = divmod(int(start_step), per_epoch)
    base_seed = tf.constant([int(seed), int(stream)], dtype=tf.int64)

    def epoch_batches(epoch: tf.Tensor) -> tf.data.Dataset:
        key = tf.random.experimental.stateless_fold_in(base_seed, epoch)
        perm = tf.random.experimental.stateless_shuffle(tf.range(size, dtype=tf.int32), seed=key)
        batches = tf.reshape(perm[:per_epoch * rows], [per_epoch, rows])
        first = tf.where(tf.equal(epoch, start_epoch), tf.constant(offset, tf.int64),
                         tf.constant(0, tf.int64))
        return tf.data.Dataset.from_tensor_slices(batches[first:])

    return tf.data.Dataset.counter(start_epoch, dtype=tf.int64).flat_map(epoch_batches)


def _paired_fn(split: PairedSplit, modalities: tuple[str, ...],
               inst: dict[str, tf.Tensor]):
    """positions (B,) into split.pairs -> {m: float32 (B, ...), "label": int32 (B,)}."""
    pairs = tf.convert_to_tensor(split.pairs.astype(np.int32))
    labels = tf.convert_to_tensor(split.labels[modalities[0]].astype(np.int32))

    def gather(positions: tf.Tensor) -> dict[str, tf.Tensor]:
        rows = tf.gather(pairs, positions)
        out = {m: _as_float(tf.gather(inst[m], rows[:, k])) for k, m in enumerate(modalities)}
        out["label"] = tf.gather(labels, rows[:, 0])
        return out

    return gather


def _redraw_key(seed: int, step: tf.Tensor, modality: str, unpaired: bool) -> tf.Tensor:
    """Stateless seed of one redrawn text modality at one step (`PairedDataset.redraw`)."""
    salt = 2 * (sum(map(ord, modality)) % 1_000_003) + int(unpaired)
    key = tf.stack([tf.constant(int(seed), tf.int64), step])
    return tf.random.experimental.stateless_fold_in(key, salt)


def check_augment(ds: PairedDataset, augment: tuple[str, ...]) -> None:
    """ValueError naming a modality of `augment` that is not an image modality of `ds`."""
    images = [s.name for s in ds.specs if s.kind == "image"]
    for m in augment:
        if m not in images:
            raise ValueError(f"--augment={m}: not an image modality of {ds.name} (expected "
                             f"one of {', '.join(images) or 'none'})")


def train_batches(ds: PairedDataset, batch_size: int, draws: int, seed: int,
                  start_step: int = 0, unpaired_pool: bool = False,
                  augment: tuple[str, ...] = ()) -> tf.data.Dataset:
    """Infinite training stream; element k is the k-th batch of `batch_size * draws` pairs.

    With `unpaired_pool`, every element also holds `<m>_unpaired` drawn (epoch-wise, without
    replacement) from modality m's unpaired pool, independently of the pairs. The image
    modalities in `augment` get small random affine maps (`augment.random_affine`) drawn from
    (seed, k); the text modalities of `ds.redraw` are drawn afresh from their labels, also
    from (seed, k).
    """
    if batch_size < 1 or draws < 1 or start_step < 0:
        raise ValueError(f"batch_size ({batch_size}) and draws ({draws}) must be >= 1 and "
                         f"start_step ({start_step}) >= 0")
    check_augment(ds, augment)
    rows = batch_size * draws
    split, modalities = ds.train, ds.modalities
    streams = [_epoch_positions(split.num_pairs, rows, seed, 0, start_step)]
    if unpaired_pool:
        streams += [_epoch_positions(len(split.unpaired[m]), rows, seed, k + 1, start_step)
                    for k, m in enumerate(modalities)]
    inst = _tensors(split, modalities)
    paired = _paired_fn(split, modalities, inst)
    pools = {m: tf.convert_to_tensor(split.unpaired[m].astype(np.int32)) for m in modalities}

    pool_labels = {m: tf.convert_to_tensor(split.labels[m].astype(np.int32))
                   for m in ds.redraw}

    def make(step: tf.Tensor, positions: tf.Tensor,
             *pool_positions: tf.Tensor) -> dict[str, tf.Tensor]:
        out = paired(positions)
        for m, pos in zip(modalities, pool_positions):
            out[f"{m}_unpaired"] = _as_float(tf.gather(inst[m], tf.gather(pools[m], pos)))
            if m in ds.redraw:
                labels = tf.gather(pool_labels[m], tf.gather(pools[m], pos))
                out[f"{m}_unpaired"] = ds.redraw[m].tf_draw(labels, _redraw_key(seed, step, m,
                                                                                 True))
        for m, rule in ds.redraw.items():  # pairs share the class: the pair label is m's
            out[m] = rule.tf_draw(out["label"], _redraw_key(seed, step, m, False))
        for k, m in enumerate(augment):
            key = tf.stack([tf.constant(int(seed), tf.int64), step * 16 + k])
            for name in (m, f"{m}_unpaired"):
                if name in out:
                    out[name] = random_affine(out[name], key)
        return out

    steps = tf.data.Dataset.counter(int(start_step), dtype=tf.int64)
    zipped = tf.data.Dataset.zip((steps, *streams))
    return _finish(zipped.map(make, num_parallel_calls=AUTOTUNE, deterministic=True))


def eval_batches(ds: PairedDataset, split: str, batch_size: int,
                 limit: Optional[int] = None) -> tf.data.Dataset:
    """Finite, unshuffled paired batches of `split` (the first `limit` pairs if given);
    the last batch may be smaller."""
    data = ds.split(split)
    n = data.num_pairs if limit is None else min(int(limit), data.num_pairs)
    if batch_size < 1 or n < 0:
        raise ValueError(f"batch_size must be >= 1 and limit >= 0, got {batch_size}, {limit}")
    gather = _paired_fn(data, ds.modalities, _tensors(data, ds.modalities))
    positions = tf.data.Dataset.from_tensor_slices(np.arange(n, dtype=np.int32))
    return _finish(positions.batch(batch_size).map(gather, num_parallel_calls=AUTOTUNE,
                                                   deterministic=True))


def unimodal_batches(ds: PairedDataset, modality: str, split: str, batch_size: int,
                     shuffle: bool = False, seed: int = 0) -> tf.data.Dataset:
    """Every instance of `modality` in `split` once: `{modality: x, "label": y}` batches."""
    ds.spec(modality)
    data = ds.split(split)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(data.instances[modality])
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    x = tf.convert_to_tensor(data.instances[modality])
    y = tf.convert_to_tensor(data.labels[modality].astype(np.int32))

    def gather(idx: tf.Tensor) -> dict[str, tf.Tensor]:
        return {modality: _as_float(tf.gather(x, idx)), "label": tf.gather(y, idx)}

    return _finish(tf.data.Dataset.from_tensor_slices(order.astype(np.int32)).batch(batch_size)
                   .map(gather, num_parallel_calls=AUTOTUNE, deterministic=True))
