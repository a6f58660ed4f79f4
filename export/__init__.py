"""ONNX export and serving of mmali_tf models.

* `export.onnx_export` (TensorFlow side): `export_bundle(model, out_dir)` writes a bundle.
* `export.runtime` (numpy + onnxruntime only): `Bundle(path)` runs it.
* `export.manifest` (json + hashlib only): reading and writing the manifest, checksums, pinning.
* `export.schema`, `export.bundle_files`, `export.limits`, `export.errors`: the checks that let
  an app load a bundle it did not build (structure, files, graphs, bounds, `BundleError`).

Importing this package imports nothing heavy; `export.runtime` never imports TensorFlow.
"""
