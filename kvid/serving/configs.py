"""TF Serving's text-proto config files, read with TF Serving's own message definitions.

``ModelServerConfig`` comes from tensorflow-serving-api. ``BatchingParameters`` and
``MonitoringConfig`` are not shipped in that wheel, so their descriptors are declared
here field for field from ``servables/tensorflow/session_bundle_config.proto`` and
``config/monitoring_config.proto`` (@9d981c5c), in a private pool: a file that TF Serving
parses parses here the same way, and a typo in a field name fails here too.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf import wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

_F = descriptor_pb2.FieldDescriptorProto


def _build_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)

    f = descriptor_pb2.FileDescriptorProto(
        name="kvid/tf_serving_configs.proto", package="tensorflow.serving", syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"])

    wrapper = _F.TYPE_MESSAGE
    # (name, type, type_name, repeated) by field number; None marks an unused number.
    batching = {
        1: ("max_batch_size", wrapper, ".google.protobuf.Int64Value", False),
        2: ("batch_timeout_micros", wrapper, ".google.protobuf.Int64Value", False),
        3: ("max_enqueued_batches", wrapper, ".google.protobuf.Int64Value", False),
        4: ("num_batch_threads", wrapper, ".google.protobuf.Int64Value", False),
        5: ("thread_pool_name", wrapper, ".google.protobuf.StringValue", False),
        6: ("allowed_batch_sizes", _F.TYPE_INT64, None, True),
        7: ("pad_variable_length_inputs", _F.TYPE_BOOL, None, False),
        8: ("enable_large_batch_splitting", wrapper, ".google.protobuf.BoolValue", False),
        9: ("max_execution_batch_size", wrapper, ".google.protobuf.Int64Value", False),
    }
    prometheus = {1: ("enable", _F.TYPE_BOOL, None, False),
                  2: ("path", _F.TYPE_STRING, None, False)}
    monitoring = {1: ("prometheus_config", _F.TYPE_MESSAGE,
                      ".tensorflow.serving.PrometheusConfig", False)}
    for name, fields in (("BatchingParameters", batching), ("PrometheusConfig", prometheus),
                         ("MonitoringConfig", monitoring)):
        m = f.message_type.add(name=name)
        for number, (field, kind, type_name, repeated) in fields.items():
            m.field.add(name=field, number=number, type=kind,
                        label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
                        **({"type_name": type_name} if type_name else {}))
    pool.Add(f)
    return pool


_POOL = _build_pool()
BatchingParameters = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))
MonitoringConfig = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))
ModelServerConfig = model_server_config_pb2.ModelServerConfig


def read_text_proto(path: str, message_class):
    """Parses a text-format proto file into a new ``message_class`` instance."""
    with open(path, encoding="utf-8") as f:
        return text_format.Parse(f.read(), message_class())


def read_model_server_config(path: str) -> model_server_config_pb2.ModelServerConfig:
    """``--model_config_file``: a ModelServerConfig with a ``model_config_list``."""
    config = read_text_proto(path, ModelServerConfig)
    if config.WhichOneof("config") != "model_config_list":
        raise ValueError(f"{path}: only model_config_list is supported")
    return config


def read_batching_parameters(path: str):
    return read_text_proto(path, BatchingParameters)


def read_monitoring_config(path: str):
    return read_text_proto(path, MonitoringConfig)
