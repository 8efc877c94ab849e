"""decloud: reconstruct cloudy Sentinel-2 images with deep networks fed by Sentinel-1 and other dates."""

import os

__version__ = "0.1.0"

# TensorFlow reads this once, at its import, which comes after the package's. Left to itself it turns its oneDNN
# kernels on only on some CPUs: on an AVX2-only AMD EPYC it left them off, and the demo's training step took
# 264 ms instead of 97 ms with them on (same losses to 4 digits). A value the user set is kept.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
