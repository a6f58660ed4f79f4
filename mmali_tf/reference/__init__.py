"""Fidelity to the authors' PyTorch code: weight import and golden-fixture helpers.

`golden` is pure NumPy (the fixture script imports it from a torch-only environment);
`layout` converts PyTorch tensors to Keras layouts; `importer` maps a state_dict onto a model.
"""
