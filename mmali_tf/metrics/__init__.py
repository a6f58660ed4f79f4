"""Evaluation metrics of multimodal generative models (used by `python -m mmali_tf.evaluate`).

Modules (import the one you need; this package imports nothing heavy itself):

* `latent_accuracy`: linear probes on sampled posterior codes (per modality, fused; whole code,
  content, style) under the `clean` or `reference` protocol.
* `coherence`: joint, cross and synergy coherence scored by pre-trained classifiers.
* `classifiers`: the per-modality digit classifiers, trained once per dataset and cached.
* `scoring`: decode-and-classify of generated latents (compiled per target modality).
* `sample_quality`: FID and PRD of generated images on the classifiers' features.
* `cca`: CCA correlation score of two vector modalities.
* `likelihood`: importance-sampled (IWAE) test log-likelihoods, unscaled.
* `report`: the metrics.json schema, report.md, PNG figures and run comparisons (no TensorFlow).
* `common`: data access, the `InferenceView` of a model, seeds and progress bars.

Every metric uses only the `MultimodalModel` inference interface through `InferenceView`.
"""
