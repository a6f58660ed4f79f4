"""The fidelity seam: every random draw of a `train_step` goes through one `Draws` object.

A model asks for draws by name (`draws.noise("eps_a/mnist", shape, family)`,
`draws.permutation("perm_b/mnist", n)`, `draws.uniform("subsets", shape)`). `RandomDraws` (the
default) ignores the name and samples from the model's `keras.random.SeedGenerator`, so the RNG
state is still checkpointed and the step still compiles with XLA. `ReplayDraws` returns given
arrays instead, so a test can replay one update with exactly the draws the authors' code made
(DESIGN.md, "Fidelity seam").
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf


def standard_noise(shape: Sequence[int], family: str, seed: Any) -> tf.Tensor:
    """Standard noise of a posterior family: Normal(0, 1) or Laplace(0, 1)."""
    if family == "laplace":
        u = keras.random.uniform(shape, minval=-0.5 + 1e-7, maxval=0.5, seed=seed)
        return -tf.sign(u) * tf.math.log1p(-2.0 * tf.abs(u))
    return keras.random.normal(shape, seed=seed)


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


class RandomDraws:
    """Fresh pseudo-random draws from `seed_generator` (names are ignored).

    Noise and permutations are replica-aware: under a strategy with several replicas each
    replica gets its slice of the global batch's draw (`replica_slice_draw`), so
    replicas differ and R replicas at batch n/R see what one replica at batch n sees.
    """

    def __init__(self, seed_generator: keras.random.SeedGenerator) -> None:
        self.seed_generator = seed_generator

    def noise(self, name: str, shape: Sequence[int], family: str = "normal",
              batch_axis: int = 0) -> tf.Tensor:
        return replica_slice_draw(lambda s: standard_noise(s, family, self.seed_generator),
                                  shape, batch_axis)

    def uniform(self, name: str, shape: Sequence[int]) -> tf.Tensor:
        return keras.random.uniform(shape, seed=self.seed_generator)

    def permutation(self, name: str, n: int) -> tf.Tensor:
        """A uniformly random permutation of range(n) (XLA-compatible)."""
        return tf.argsort(replica_slice_draw(
            lambda shape: keras.random.uniform(shape, seed=self.seed_generator), [n]))


class ReplayDraws:
    """Draws given as arrays by name; asking for a missing name or a wrong shape is an error.

    A name asked for several times (e.g. by each of `dis_iter` critic updates of one
    `train_step`) is given as `<name>#0`, `<name>#1`, ... in the order of the requests; a plain
    `<name>` answers every request. `unused()` lists the given names no draw asked for, so a
    test can check that the replay consumed exactly the authors' draws.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self.used: set[str] = set()
        self.requests: dict[str, int] = {}

    def _get(self, name: str, shape: Sequence[int] | None, dtype) -> tf.Tensor:
        k = self.requests.get(name, 0)
        self.requests[name] = k + 1
        if name not in self.arrays:
            name = f"{name}#{k}"
        if name not in self.arrays:
            raise KeyError(f"replay has no draw named {name!r}; it has {sorted(self.arrays)}")
        value = self.arrays[name]
        if shape is not None:
            want = tuple(int(s) for s in tf.get_static_value(tf.convert_to_tensor(shape)))
            if value.shape != want:
                raise ValueError(f"replayed draw {name!r} has shape {value.shape}, the model "
                                 f"asked for {want}")
        self.used.add(name)
        return tf.constant(value, dtype)

    def noise(self, name: str, shape: Sequence[int], family: str = "normal",
              batch_axis: int = 0) -> tf.Tensor:
        return self._get(name, shape, tf.float32)

    def uniform(self, name: str, shape: Sequence[int]) -> tf.Tensor:
        return self._get(name, shape, tf.float32)

    def permutation(self, name: str, n: int) -> tf.Tensor:
        return self._get(name, [n], tf.int32)

    def unused(self) -> list[str]:
        return sorted(set(self.arrays) - self.used)
