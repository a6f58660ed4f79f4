"""ONNX export and serving of mmali_tf models.

* `export.onnx_export` (TensorFlow side): `export_bundle(model, out_dir)` writes a bundle.
* `export.runtime` (numpy + onnxruntime only): `Bundle(path)` runs it.
* `export.manifest` (json + hashlib only): the bundle manifest schema and checksums.

Importing this package imports nothing heavy; `export.runtime` never imports TensorFlow.
"""
