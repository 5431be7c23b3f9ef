"""TF Serving's gRPC ``PredictionService`` (Predict, GetModelMetadata) and ``ModelService``
(GetModelStatus) over the same model manager as the REST API, so a TF Serving gRPC client
works unchanged against ``kvid serve``. Predict, Classify and Regress are counted in the
request metrics as ``prediction_service_impl.cc`` counts them (``entrypoint="GRPC"``).
"""

from __future__ import annotations

import functools
import time
from concurrent import futures

import grpc
from tensorflow_serving.apis import (get_model_metadata_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from kvid.serving.errors import ServingError, invalid_argument
from kvid.serving.metrics import Metrics
from kvid.serving.servables import DEFAULT_SIGNATURE, ModelManager
from kvid.serving.tensor_proto import from_tensor_proto, to_tensor_proto

SIGNATURE_DEF_FIELD = "signature_def"  # GetModelMetadataImpl::kSignatureDef


def _model_spec(request):
    """The request's ModelSpec; every TF Serving RPC refuses a request without one."""
    if not request.HasField("model_spec"):
        raise invalid_argument("Missing ModelSpec")
    return request.model_spec


def _servable_args(spec) -> tuple[str, int | None, str | None]:
    """``ServerCore::ServableRequestFromModelSpec``: name plus version or label."""
    choice = spec.WhichOneof("version_choice")
    version = spec.version.value if choice == "version" else None
    label = spec.version_label if choice == "version_label" else None
    return spec.name, version, label


def _aborts_on_error(method=None, *, api: str | None = None):
    """Turns a ServingError into the gRPC status with the same code and message.

    With ``api`` (``"Predict"``, ...) the call is also counted in ``self.metrics``:
    ``request_count`` by ``model_spec.name`` and status, ``request_latency`` when it
    succeeded.
    """
    if method is None:
        return functools.partial(_aborts_on_error, api=api)

    @functools.wraps(method)
    def wrapper(self, request, context):
        start_ns = time.monotonic_ns()
        code = grpc.StatusCode.OK
        try:
            return method(self, request, context)
        except ServingError as e:
            code = e.code
            context.abort(e.code, e.message)
        except BaseException:
            code = grpc.StatusCode.UNKNOWN  # what grpcio answers for an exception
            raise
        finally:
            metrics = getattr(self, "metrics", None)
            if api is not None and metrics is not None:
                metrics.record_request(request.model_spec.name, api, "GRPC", code.name,
                                       (time.monotonic_ns() - start_ns) // 1000)

    return wrapper


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: ModelManager, metrics: Metrics | None = None):
        self.manager = manager
        self.metrics = metrics

    @_aborts_on_error(api="Predict")
    def Predict(self, request, context):
        servable = self.manager.get(*_servable_args(_model_spec(request)))
        signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
        inputs = {k: from_tensor_proto(v) for k, v in request.inputs.items()}
        outputs = servable.predict(signature, inputs, tuple(request.output_filter))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.signature_name = signature
        response.model_spec.version.value = servable.version
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(to_tensor_proto(value))
        return response

    @_aborts_on_error
    def GetModelMetadata(self, request, context):
        spec = _model_spec(request)
        if not request.metadata_field:
            raise invalid_argument(
                "GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != SIGNATURE_DEF_FIELD:
                raise invalid_argument(f"Metadata field {field} is not supported")
        servable = self.manager.get(*_servable_args(spec))
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.metadata[SIGNATURE_DEF_FIELD].Pack(servable.signature_def_map())
        return response

    @staticmethod
    def _unimplemented(request, context):
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED, "kvid serve implements Predict "
                           "and GetModelMetadata; use Predict")

    @_aborts_on_error(api="Classify")
    def Classify(self, request, context):
        self._unimplemented(request, context)

    @_aborts_on_error(api="Regress")
    def Regress(self, request, context):
        self._unimplemented(request, context)

    @_aborts_on_error  # not counted, as in TF Serving
    def MultiInference(self, request, context):
        self._unimplemented(request, context)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager):
        self.manager = manager

    @_aborts_on_error
    def GetModelStatus(self, request, context):
        spec = _model_spec(request)
        version = spec.version.value if spec.HasField("version") else None
        return self.manager.status(spec.name, version)


def make_grpc_server(manager: ModelManager, host: str, port: int, *, max_workers: int,
                     max_message_bytes: int, metrics: Metrics | None = None
                     ) -> tuple[grpc.Server, int]:
    """A started gRPC server with both services; returns it and its bound port."""
    options = [("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.max_send_message_length", -1),
               ("grpc.so_reuseport", 0)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers,
                                                    thread_name_prefix="kvid-grpc"),
                         options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(manager, metrics), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(manager), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise OSError(f"cannot bind gRPC to {host}:{port}")
    server.start()
    return server, bound
