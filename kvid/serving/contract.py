"""The SavedModel contract between ``kvid export``, the server and the clients.

TF Serving, ``kvid serve``, ``kvid predict`` and TFMA find a kvid model's signatures,
tensors and files by these names, so they are defined once, here: changing a name means
changing this file (and re-exporting the models). No TensorFlow import, so that the
REST/gRPC client can use them without loading it.
"""

import os

# Signatures written by kvid.train.export.
DEFAULT_SIGNATURE = "serving_default"  # JPEG frames; what a request naming none gets
EXAMPLES_SIGNATURE = "serving_examples"  # serialized clip records (kvid/schema.py); TFMA's
TENSOR_SIGNATURE = "serving_tensor"  # float32 pixels in [0, 255]
METADATA_SIGNATURE = "kvid_metadata"  # the preprocessing JSON, as TF Serving hides assets
# A stream model's (MoViNet *_stream): TF Serving keeps no state, so the client carries it.
STREAM_INIT_SIGNATURE = "stream_init"  # BATCH_SIZE_INPUT -> zero states
STREAM_STEP_SIGNATURE = "stream_step"  # FRAMES_INPUT chunk [B, n] + states -> outputs + states
BATCH_SIZE_INPUT = "batch_size"  # int32 scalar
# kvid serve's stream sessions (kvid.serving.streams), beside TF Serving's /v1/ API.
STREAMS_PATH = "/kvid/streams"

# Inputs.
FRAMES_INPUT = "frames"  # DEFAULT_SIGNATURE and TENSOR_SIGNATURE of an rgb model
FLOW_INPUT = "flow"  # the same of a flow model: 8-bit flow images (kvid/schema.py FLOW)
FRAME_PAIRS_INPUT = "frame_pairs"  # of an RGB-difference model: frames i, i + 1 per position
# The input each stream of a model reads (kvid.data.InputConfig.streams), in input order.
STREAM_INPUTS = {"rgb": FRAMES_INPUT, "flow": FLOW_INPUT, "rgbdiff": FRAME_PAIRS_INPUT}
EXAMPLES_INPUT = "examples"  # EXAMPLES_SIGNATURE
METADATA_INPUT = "request"  # METADATA_SIGNATURE; any strings, one answer each

# Outputs of the three clip signatures, and of METADATA_SIGNATURE.
PROBABILITIES_OUTPUT = "probabilities"
CLASSES_OUTPUT = "classes"
LABELS_OUTPUT = "labels"
SCORES_OUTPUT = "scores"
METADATA_OUTPUT = "metadata"

# Files, relative to the SavedModel folder.
ASSETS_DIR = "assets"
LABELS_FILE = "labels.txt"  # in ASSETS_DIR: one class name a line
PREPROCESSING_FILE = "kvid.json"  # in ASSETS_DIR: what METADATA_SIGNATURE answers
ASSETS_EXTRA_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"  # in ASSETS_EXTRA_DIR: PredictionLog records
WARMUP_PATH = os.path.join(ASSETS_EXTRA_DIR, WARMUP_FILE)
# A TF Lite export (kvid export --tflite) is a folder of this file, LABELS_FILE and
# PREPROCESSING_FILE; its signatures are DEFAULT_SIGNATURE and STREAM_STEP_SIGNATURE.
TFLITE_FILE = "model.tflite"
