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
from google.protobuf import message
from tensorflow_serving.apis import (get_model_metadata_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from kvid.serving.contract import DEFAULT_SIGNATURE
from kvid.serving.errors import ServingError, invalid_argument
from kvid.serving.limits import RequestLimits
from kvid.serving.metrics import Metrics
from kvid.serving.servables import ModelManager, check_input_shape
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


def _parse_tensor(name: str, proto):
    """``Tensor::FromProto`` as ``predict_util.cc`` calls it: a TensorProto whose dtype,
    shape and values do not make a tensor is the client's error, in TF Serving's words."""
    try:
        return from_tensor_proto(proto)
    except (ValueError, TypeError, KeyError, OverflowError, MemoryError):
        raise invalid_argument(f"tensor parsing error: {name}") from None


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """``limits`` (when given) are checked before a tensor is materialized or an image
    decoded: the declared shapes against the signature and the size limit, then the
    images' header sizes."""

    def __init__(self, manager: ModelManager, metrics: Metrics | None = None,
                 limits: RequestLimits | None = None):
        self.manager = manager
        self.metrics = metrics
        self.limits = limits

    @_aborts_on_error(api="Predict")
    def Predict(self, request, context):
        servable = self.manager.get(*_servable_args(_model_spec(request)))
        signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
        if self.limits is not None:
            sig = servable.signature_def(signature, rest=False)
            for name, proto in sorted(request.inputs.items()):
                if name in sig.inputs:
                    check_input_shape(name, [d.size for d in proto.tensor_shape.dim],
                                      sig.inputs[name])
                self.limits.check_tensor_proto(name, proto)
        inputs = {k: _parse_tensor(k, v) for k, v in request.inputs.items()}
        if self.limits is not None:
            self.limits.check_images(inputs)
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


class _Unparsable:
    """A request whose bytes are not the method's message (protobuf refused them)."""

    def __init__(self, error: Exception):
        self.error = error


class _ClientErrors(grpc.GenericRpcHandler):
    """The generated handlers, except that a request protobuf cannot parse is
    INVALID_ARGUMENT (grpcio answers INTERNAL and logs a traceback) and a method kvid
    does not implement is UNIMPLEMENTED without a logged traceback."""

    def __init__(self, inner: grpc.GenericRpcHandler):
        self._inner = inner
        self._cache: dict[str, grpc.RpcMethodHandler | None] = {}

    def service(self, details):
        if details.method not in self._cache:
            handler = self._inner.service(details)
            if handler is not None and handler.unary_unary is not None:
                handler = handler._replace(
                    request_deserializer=self._parse(handler.request_deserializer),
                    unary_unary=self._call(details.method, handler.unary_unary))
            self._cache[details.method] = handler
        return self._cache[details.method]

    @staticmethod
    def _parse(parse):
        def lenient(data: bytes):
            try:
                return parse(data)
            except message.DecodeError as e:
                return _Unparsable(e)

        return lenient

    @staticmethod
    def _call(method: str, impl):
        def call(request, context):
            if isinstance(request, _Unparsable):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"Failed to parse the request of {method}: {request.error}")
            try:
                return impl(request, context)
            except NotImplementedError:  # the generated servicer's default
                context.abort(grpc.StatusCode.UNIMPLEMENTED,
                              f"{method} is not implemented by kvid serve")

        return call


class _Collect:
    """Stands in for a server to collect what a generated ``add_*_to_server`` adds."""

    def __init__(self):
        self.handlers: list[grpc.GenericRpcHandler] = []

    def add_generic_rpc_handlers(self, handlers) -> None:
        self.handlers.extend(handlers)

    def add_registered_method_handlers(self, name, handlers) -> None:
        pass  # grpcio's fast path for registered methods; the generic handlers suffice


def make_grpc_server(manager: ModelManager, host: str, port: int, *, max_workers: int,
                     max_message_bytes: int, max_concurrent_rpcs: int | None = None,
                     limits: RequestLimits | None = None, metrics: Metrics | None = None
                     ) -> tuple[grpc.Server, int]:
    """A gRPC server with both services, bound but not started; returns it and its port.

    ``max_concurrent_rpcs``: calls in progress beyond it get RESOURCE_EXHAUSTED at once.
    """
    options = [("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.max_send_message_length", -1),
               ("grpc.so_reuseport", 0)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers,
                                                    thread_name_prefix="kvid-grpc"),
                         options=options, maximum_concurrent_rpcs=max_concurrent_rpcs)
    collect = _Collect()
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(manager, metrics, limits), collect)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(manager), collect)
    server.add_generic_rpc_handlers([_ClientErrors(h) for h in collect.handlers])
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:  # grpcio raises instead of returning 0 for some addresses
        bound = 0
    if not bound:
        raise OSError(f"cannot listen on {host}:{port} for gRPC (in use, or not an address "
                      f"of this machine)")
    return server, bound
