"""kvid: human action recognition in video with TensorFlow/Keras, Beam, TFX and TF Serving."""

import os

# TensorFlow uses its oneDNN CPU kernels by default only on CPUs with AVX-512 VNNI/BF16 or
# AMX; without them its own Conv3D gradients are orders of magnitude slower (README,
# "Install"). This must run before TensorFlow loads; an explicit setting wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
