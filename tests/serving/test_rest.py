"""``kvid serve`` REST: answers equal the SavedModel called directly; TF Serving's errors."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format

from kvid import schema
from kvid.serving.client import Client
from kvid.serving.testing import toy_clip

from serving_fixtures import MODEL, http_request

CLIPS = [toy_clip(seed=0), toy_clip(seed=1)]


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


@pytest.fixture(scope="module")
def direct(toy_versions):
    """The version-1 SavedModel's signatures, called in process."""
    loaded = tf.saved_model.load(toy_versions[1])

    def call(signature, **inputs):
        out = loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
        return {k: v.numpy() for k, v in out.items()}

    return call


def post(server, path, doc):
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    status, headers, data = http_request(server.rest_port, "POST", path, body)
    return status, headers, data


def predict_ok(server, doc, path=f"/v1/models/{MODEL}:predict"):
    status, headers, data = post(server, path, doc)
    assert status == 200, data
    assert headers["Content-Type"] == "application/json"
    return json.loads(data)


def assert_kvid_outputs_equal(got: dict, want: dict):
    assert sorted(got) == sorted(want) == ["classes", "labels", "probabilities", "scores"]
    for k in want:
        if want[k].dtype == object:
            assert [[s.encode() for s in row] for row in got[k]] == want[k].tolist()
        else:
            np.testing.assert_array_equal(np.asarray(got[k], want[k].dtype), want[k])


def test_row_and_columnar_jpeg_predictions_equal_the_direct_call(server, direct):
    want = direct("serving_default", frames=np.array(CLIPS, dtype=object))
    row = predict_ok(server, {"instances": [[b64(f) for f in clip] for clip in CLIPS]})
    assert list(row) == ["predictions"] and len(row["predictions"]) == 2
    assert_kvid_outputs_equal({k: [p[k] for p in row["predictions"]] for k in want}, want)
    col = predict_ok(server, {"inputs": {"frames": [[b64(f) for f in c] for c in CLIPS]},
                              "signature_name": "serving_default"})
    assert list(col) == ["outputs"]
    assert_kvid_outputs_equal(col["outputs"], want)


def test_examples_and_tensor_signatures(server, direct):
    record = schema.serialize_clip(schema.Clip(
        frames=CLIPS[0], label=0, label_name="wave", video_id="v", group="g", clip_index=0,
        clip_start_frame=0, fps=25.0, height=32, width=32))
    want = direct("serving_examples", examples=np.array([record], dtype=object))
    got = predict_ok(server, {"signature_name": "serving_examples",
                              "instances": [b64(record)]})
    assert_kvid_outputs_equal({k: [p[k] for p in got["predictions"]] for k in want}, want)
    pixels = np.random.default_rng(0).uniform(0, 255, (1, 16, 32, 32, 3)).astype(np.float32)
    want = direct("serving_tensor", frames=pixels)
    got = predict_ok(server, {"signature_name": "serving_tensor", "inputs": pixels.tolist()})
    assert_kvid_outputs_equal(got["outputs"], want)


def test_several_inputs_bytes_outputs_and_single_output_naming(server, direct):
    got = predict_ok(server, {"signature_name": "multi",
                              "instances": [{"x": [1, 2, 3], "tag": "a"},
                                            {"x": [0.5, 0, 0], "tag": b64(b"\x00b")}]})
    want = direct("multi", x=np.array([[1, 2, 3], [0.5, 0, 0]], np.float32),
                  tag=np.array([b"a", b"\x00b"], dtype=object))
    assert [p["y"] for p in got["predictions"]] == want["y"].tolist()
    assert [base64.b64decode(p["echo_bytes"]["b64"]) for p in got["predictions"]] == \
        want["echo_bytes"].tolist()
    single = predict_ok(server, {"signature_name": "single", "instances": [[1, 2, 3]]})
    assert single == {"predictions": [[3.0, 5.0, 7.0]]}  # the one output is not named
    _, _, raw = post(server, f"/v1/models/{MODEL}:predict",
                     {"signature_name": "single", "inputs": [[1, 2, 3]]})
    assert raw == b'{\n    "outputs": [\n        [\n            3.0,\n            5.0,\n' \
                  b'            7.0\n        ]\n    ]\n}'


def test_status_and_metadata_documents(server, toy_versions):
    for path in (f"/v1/models/{MODEL}", f"/v1/models/{MODEL}/versions/1"):
        status, _, data = http_request(server.rest_port, "GET", path)
        assert status == 200
        assert json.loads(data) == {"model_version_status": [{
            "version": "1", "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""}}]}
    status, _, data = http_request(server.rest_port, "GET", f"/v1/models/{MODEL}/metadata")
    assert status == 200
    doc = json.loads(data)
    assert doc["model_spec"] == {"name": MODEL, "signature_name": "", "version": "1"}
    sigs = doc["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "serving_examples", "serving_tensor", "__saved_model_init_op"} \
        <= set(sigs)
    frames = sigs["serving_default"]["inputs"]["frames"]
    assert frames["dtype"] == "DT_STRING"
    assert [d["size"] for d in frames["tensor_shape"]["dim"]] == ["-1", "16"]
    assert sorted(sigs["serving_default"]["outputs"]) == \
        ["classes", "labels", "probabilities", "scores"]
    # The same document as protobuf's JSON of the SavedModel's own SignatureDefs.
    from tensorflow.core.protobuf import saved_model_pb2
    saved = saved_model_pb2.SavedModel.FromString(
        open(f"{toy_versions[1]}/saved_model.pb", "rb").read())
    want = json_format.MessageToDict(saved.meta_graphs[0].signature_def["serving_default"],
                                     preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)
    assert sigs["serving_default"] == want


def test_client_rest_results_equal_the_direct_call(server, direct):
    with Client(rest_url=server.rest_url, model=MODEL) as client:
        got = client.predict({"frames": np.array(CLIPS, dtype=object)})
        rows = client.predict([CLIPS[0], CLIPS[1]])
        multi = client.predict([{"x": [1, 2, 3], "tag": b"\xff"}], signature_name="multi")
    want = direct("serving_default", frames=np.array(CLIPS, dtype=object))
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
        np.testing.assert_array_equal(rows[k], want[k])
        assert got[k].dtype == want[k].dtype
    assert multi["echo_bytes"].tolist() == [b"\xff\xff"]


FRAMES_OK = {"instances": [[b64(f) for f in CLIPS[0]]]}
BAD_REQUESTS = [
    # (method, path, body, status, error text (exact, or prefix when ending in "..."))
    ("POST", f"/v1/models/{MODEL}:predict", b'{"instances": [', 400,
     "JSON Parse error: Invalid value. at offset: 15"),
    ("POST", "/v1/models/nope:predict", b"{not json", 400,  # body is parsed before lookup
     "JSON Parse error: Missing a name for object member. at offset: 1"),
    ("POST", f"/v1/models/{MODEL}:predict", {"instances": [[b64(CLIPS[0][0])] * 8]}, 400,
     "Input 'frames' has shape [1,8], which is not compatible with the signature's shape "
     "[-1,16]"),
    ("POST", f"/v1/models/{MODEL}:predict", {"instances": [[1.0] * 16]}, 400,
     "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
     "JSON Value: 1.0 Type: Number is not of expected type: string"),
    ("POST", f"/v1/models/{MODEL}:predict", {"instances": [[{"b64": "%%%"}] * 16]}, 400,
     "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
     "Unable to base64 decode"),
    ("POST", f"/v1/models/{MODEL}:predict", {"instances": [[b64(b"not a jpeg")] * 16]}, 400,
     "..."),
    ("POST", f"/v1/models/{MODEL}:predict", {"instances": []}, 400,
     'JSON Value: {\n    "instances": []\n} No values in \'instances\' array'),
    ("POST", "/v1/models/nope:predict", FRAMES_OK, 404,
     "Servable not found for request: Latest(nope)"),
    ("POST", f"/v1/models/{MODEL}/versions/7:predict", FRAMES_OK, 404,
     f"Servable not found for request: Specific({MODEL}, 7)"),
    ("POST", f"/v1/models/{MODEL}/labels/stable:predict", FRAMES_OK, 400,
     "Unrecognized servable version label: stable"),
    ("POST", f"/v1/models/{MODEL}:predict", {"signature_name": "nope", **FRAMES_OK}, 400,
     'Serving signature name: "nope" not found in signature def'),
    ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    ("GET", f"/v1/models/{MODEL}/versions/7", None, 404,
     f"Could not find version 7 of model {MODEL}"),
    ("GET", f"/v1/models/{MODEL}/versions/7/metadata", None, 404,
     f"Servable not found for request: Specific({MODEL}, 7)"),
    ("GET", "/v1/models", None, 400, "Missing model name in request."),
    ("GET", f"/v1/models/{MODEL}:predict", None, 400,
     f"Malformed request: GET /v1/models/{MODEL}:predict"),
    ("PUT", f"/v1/models/{MODEL}:predict", FRAMES_OK, 400,
     f"Malformed request: PUT /v1/models/{MODEL}:predict"),
    ("POST", f"/v1/models/{MODEL}", FRAMES_OK, 400, f"Malformed request: POST /v1/models/{MODEL}"),
    ("GET", f"/v1/models/{MODEL}/versions/x", None, 400,
     f"Malformed request: GET /v1/models/{MODEL}/versions/x"),
    ("POST", f"/v1/models/{MODEL}:classify", {"examples": [{"x": 1}]}, 400,
     "Expected one or two output Tensors, found 4"),
    ("POST", f"/v1/models/{MODEL}:regress", {"examples": []}, 400,
     'JSON Value: {\n    "examples": []\n} \'examples\' value is an empty array'),
]


@pytest.mark.parametrize("method,path,body,status,message", BAD_REQUESTS,
                         ids=[f"{m} {p} {s}" for m, p, _, s, _ in BAD_REQUESTS])
def test_bad_requests_get_tf_serving_errors_and_server_keeps_answering(
        server, method, path, body, status, message):
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    got_status, headers, got = http_request(server.rest_port, method, path, data)
    assert got_status == status, got
    assert headers["Content-Type"] == "application/json"
    error = json.loads(got)["error"]
    if message.endswith("..."):
        assert error.startswith(message[:-3])
    else:
        assert error == message
    assert list(json.loads(got)) == ["error"]
    assert predict_ok(server, FRAMES_OK)["predictions"][0]["labels"]


def test_oversized_body_is_refused_with_413(server):
    big = json.dumps({"instances": [[b64(b"x" * (1 << 20))] * 16]}).encode()
    status, headers, data = http_request(server.rest_port, "POST",
                                         f"/v1/models/{MODEL}:predict", big)
    assert status == 413
    assert "larger than the limit" in json.loads(data)["error"]
    assert predict_ok(server, FRAMES_OK)["predictions"]


def test_paths_outside_v1_are_plain_404s(server):
    status, _, data = http_request(server.rest_port, "GET", "/healthz")
    assert status == 404 and data == b""


def test_binds_loopback_only(server):
    assert server.host == "127.0.0.1"
    assert server._rest.server_address[0] == "127.0.0.1"
