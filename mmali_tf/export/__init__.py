"""ONNX export and serving of mmali_tf models.

* `mmali_tf.export.onnx_export` (TensorFlow side): `export_bundle(model, out_dir)` writes a bundle.
* `mmali_tf.export.runtime` (numpy + onnxruntime only): `Bundle(path)` runs it.
* `mmali_tf.export.manifest` (json + hashlib only): reading and writing the manifest, checksums, pinning.
* `mmali_tf.export.schema`, `mmali_tf.export.bundle_files`, `mmali_tf.export.limits`, `mmali_tf.export.errors`: the checks that let
  an app load a bundle it did not build (structure, files, graphs, bounds, `BundleError`).

Importing this package imports nothing heavy; `mmali_tf.export.runtime` never imports TensorFlow.
"""
