"""ndarray <-> ``TensorProto`` for the gRPC server and client.

Outputs are written into the typed ``*_val`` fields (TF Serving's ``AsProtoField``, its
default for Predict), so clients that read ``float_val`` directly keep working.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2

# Typed value field of each dtype, as Tensor::AsProtoField fills it.
_FIELDS = {
    tf.float32: "float_val", tf.float64: "double_val", tf.int32: "int_val",
    tf.int16: "int_val", tf.int8: "int_val", tf.uint8: "int_val", tf.uint16: "int_val",
    tf.int64: "int64_val", tf.uint32: "uint32_val", tf.uint64: "uint64_val",
    tf.bool: "bool_val", tf.string: "string_val",
}


def to_tensor_proto(array, dtype: tf.DType | None = None) -> tensor_pb2.TensorProto:
    """An array (or nested lists, or bytes) as a TensorProto, cast to ``dtype`` if given."""
    if dtype is None:
        array = np.asarray(array)
        dtype = tf.string if array.dtype.kind in "OSU" else tf.as_dtype(array.dtype)
    elif dtype == tf.string:
        array = np.asarray(array, dtype=object)
    else:
        array = np.asarray(array, dtype=dtype.as_numpy_dtype)
    field = _FIELDS.get(dtype)
    if field is None:
        return tf.make_tensor_proto(array, dtype=dtype)
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape])
    proto = tensor_pb2.TensorProto(dtype=dtype.as_datatype_enum, tensor_shape=shape)
    values = array.ravel().tolist()
    if dtype == tf.string:
        values = [v.encode() if isinstance(v, str) else bytes(v) for v in values]
    getattr(proto, field).extend(values)
    return proto


def from_tensor_proto(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """TensorProto -> ndarray (string tensors become object arrays of bytes)."""
    return tf.make_ndarray(proto)
