"""gRPC PredictionService/ModelService: a TF Serving client gets what REST gives."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from serving_fixtures import MODEL
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from kvid.serving.client import Client
from kvid.serving.errors import ServingError
from kvid.serving.testing import toy_clip

CLIPS = np.array([toy_clip(seed=0), toy_clip(seed=1)], dtype=object)


@pytest.fixture(scope="module")
def stubs(server):
    channel = grpc.insecure_channel(server.grpc_target)
    yield (prediction_service_pb2_grpc.PredictionServiceStub(channel),
           model_service_pb2_grpc.ModelServiceStub(channel))
    channel.close()


def test_raw_tf_serving_predict_request(stubs):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["frames"].CopyFrom(tf.make_tensor_proto(CLIPS))
    request.output_filter.append("labels")
    response = stubs[0].Predict(request, timeout=30)
    assert response.model_spec.signature_name == "serving_default"
    assert response.model_spec.version.value == 1
    assert list(response.outputs) == ["labels"]
    labels = tf.make_ndarray(response.outputs["labels"])
    assert labels.shape == (2, 3) and labels.dtype == object


def test_client_grpc_equals_client_rest(server):
    rest = Client(rest_url=server.rest_url, model=MODEL)
    over_grpc = Client(grpc_target=server.grpc_target, model=MODEL)
    with rest, over_grpc:
        for inputs, sig in [({"frames": CLIPS}, "serving_default"),
                            ([list(CLIPS[0])], "serving_default"),
                            ([{"x": [1, 2, 3], "tag": b"a"}], "multi"),
                            ({"x": [[1.5, 2, 3]]}, "single")]:
            a, b = rest.predict(inputs, sig), over_grpc.predict(inputs, sig)
            assert sorted(a) == sorted(b)
            for k in a:
                assert a[k].dtype == b[k].dtype, k
                np.testing.assert_array_equal(a[k], b[k])
        assert rest.metadata() == over_grpc.metadata()
        assert rest.status() == over_grpc.status()
        assert rest.status(version=1) == over_grpc.status(version=1)


def test_metadata_and_status_rpcs(stubs):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL
    response = stubs[0].GetModelMetadata(request, timeout=30)
    sigs = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(sigs)
    assert "serving_tensor" in sigs.signature_def
    status = stubs[1].GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
        model_spec={"name": MODEL}), timeout=30)
    assert [(s.version, s.state) for s in status.model_version_status] == \
        [(1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]


@pytest.mark.parametrize("model,signature,inputs,code,message", [
    ("nope", "", {"frames": CLIPS}, grpc.StatusCode.NOT_FOUND,
     "Servable not found for request: Latest(nope)"),
    (MODEL, "nope", {"frames": CLIPS}, grpc.StatusCode.FAILED_PRECONDITION,
     'Serving signature key "nope" not found.'),
    (MODEL, "", {"frames": CLIPS, "x": np.zeros(1)}, grpc.StatusCode.INVALID_ARGUMENT,
     "input size does not match signature: 2!=1 len({frames,x}) != len({frames}). "
     "Sent extra: {x}. Missing but required: {}."),
    (MODEL, "", {"frames": np.zeros([1, 16], np.float32)}, grpc.StatusCode.INVALID_ARGUMENT,
     "Expects arg[0] to be string but float is provided"),
])
def test_grpc_errors_carry_tf_serving_codes(stubs, model, signature, inputs, code, message):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    for k, v in inputs.items():
        request.inputs[k].CopyFrom(tf.make_tensor_proto(v))
    with pytest.raises(grpc.RpcError) as e:
        stubs[0].Predict(request, timeout=30)
    assert (e.value.code(), e.value.details()) == (code, message)


def test_client_raises_serving_errors_with_codes(server):
    with Client(grpc_target=server.grpc_target, model="nope") as c:
        with pytest.raises(ServingError) as e:
            c.status()
        assert e.value.code == grpc.StatusCode.NOT_FOUND
    with Client(rest_url=server.rest_url, model="nope") as c:
        with pytest.raises(ServingError) as e:
            c.status()
        assert e.value.code == grpc.StatusCode.NOT_FOUND
        assert e.value.message == "Could not find any versions of model nope"
