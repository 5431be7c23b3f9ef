"""kvid: human action recognition in video with TensorFlow/Keras, Beam, TFX and TF Serving."""

__version__ = "0.1.0"
