"""Upper bounds on what a bundle may declare and on what one call may ask for.

A bundle downloaded from elsewhere is input: its manifest could declare a latent of 10^12 floats
or a billion graphs, and a caller could ask `generate` for 10^9 samples. `Limits` bounds every
size the runtime would allocate from, so such a bundle or request fails with a one-line
`BundleError` before anything large is read or allocated. The defaults are far above what
mmali_tf exports (a two-modality digits bundle: 12 graphs, files of 0.01-3 MB, a 10 KB
manifest); pass `Bundle(path, limits=Limits(...))` for larger models.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Limits:
    """Bounds applied when loading a bundle and on every inference call.

    Attributes:
      manifest_bytes: size of `manifest.json`.
      modalities: number of modalities.
      graphs: number of graphs.
      graph_bytes: size of one graph file (read whole into memory; protobuf stops at 2 GiB).
      bundle_bytes: total size of the graph files (all may end up as live sessions).
      dim: any single declared dimension (a shape entry, latent sizes).
      example_elements: scalars in one example of one modality.
      batch: examples in one call (`generate(n)` and every input array).
      batch_elements: scalars in one batched input or output array (2^28 floats: 1 GiB).
      text: length of any name or string in the manifest.
    """

    manifest_bytes: int = 1 << 20
    modalities: int = 16
    graphs: int = 512
    graph_bytes: int = 1 << 30
    bundle_bytes: int = 8 << 30
    dim: int = 1 << 20
    example_elements: int = 1 << 24
    batch: int = 1 << 16
    batch_elements: int = 1 << 28
    text: int = 256


DEFAULT_LIMITS = Limits()
