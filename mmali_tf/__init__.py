"""mmali_tf: multimodal adversarially learned inference (mmALI) and multimodal VAE baselines.

Importing the package sets the Keras backend to TensorFlow; heavy modules are imported lazily.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
