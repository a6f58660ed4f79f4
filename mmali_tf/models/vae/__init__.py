"""Multimodal VAE baselines: MVAE, JMVAE, MMVAE, mmJSD(-MS), contrastive cI-/cC- variants,
MoPoE-VAE and MMVAE+.

`objectives` holds the pure objective functions, `distributions` the parameter -> TFP mapping,
`common.VAEModel` the shared training/inference plumbing; one module per model family.
Models are built through the registry (`mmali_tf.models.build(name, specs, config)`).
"""
