"""The REST codec against TF Serving's json_tensor.cc behaviour, without a server."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from kvid.serving import json_tensor as jt
from kvid.serving.errors import ServingError


def specs(**dtypes):
    return lambda signature_name: dtypes


def parse(body, **dtypes):
    return jt.parse_predict_request(body.encode() if isinstance(body, str) else body,
                                    specs(**dtypes))


def error_of(body, **dtypes) -> str:
    with pytest.raises(ServingError) as e:
        parse(body, **dtypes)
    assert e.value.http_status == 400
    return e.value.message


@pytest.mark.parametrize("value,single,text", [
    (0.2, True, "0.2"), (1.0, True, "1.0"), (9000000.0, True, "9e+06"),
    (0.00003, True, "3e-05"), (1 / 3, False, "0.33333333333333331"),
    (float(np.float32(0.1234567)), True, "0.123456702"), (-0.0, True, "-0.0"),
    (float("nan"), True, "NaN"), (float("-inf"), False, "-Infinity"), (123456.0, True, "123456.0"),
])
def test_write_decimal_matches_tf_serving(value, single, text):
    assert jt.write_decimal(value, single) == text


def test_row_response_bytes_are_rapidjson_pretty_writer_output():
    one = jt.make_json({"y": np.array([[1.0, 2.5], [3.0, 4.0]], np.float32)}, jt.ROW)
    assert one == b'{\n    "predictions": [[1.0, 2.5], [3.0, 4.0]\n    ]\n}'
    scalars = jt.make_json({"y": np.array([1, 2], np.int32)}, jt.ROW)
    assert scalars == b'{\n    "predictions": [1, 2\n    ]\n}'
    multi = jt.make_json({"y": np.array([7.0], np.float32),
                          "out_bytes": np.array([b"\xff"], object),
                          "s": np.array([b"a\"b"], object)}, jt.ROW)
    assert multi == (b'{\n    "predictions": [\n        {\n'
                     b'            "out_bytes": {\n                "b64": "/w=="\n            },\n'
                     b'            "s": "a\\"b",\n            "y": 7.0\n        }\n    ]\n}')


def test_columnar_response_and_errors():
    out = jt.make_json({"y": np.array([[1, 2]], np.int64)}, jt.COLUMNAR)
    assert out == (b'{\n    "outputs": [\n        [\n            1,\n            2\n'
                   b'        ]\n    ]\n}')
    with pytest.raises(ServingError, match="inconsistent batch size: 1 expecting: 2"):
        jt.make_json({"a": np.zeros([2]), "b": np.zeros([1])}, jt.ROW)
    with pytest.raises(ServingError, match="has no shape information"):
        jt.make_json({"a": np.float32(1)}, jt.ROW)
    assert jt.error_body("bad") == b'{\n    "error": "bad"\n}'


def test_row_and_columnar_requests_build_the_same_tensors():
    row = parse('{"instances": [[1, 2], [3, 4.5]]}', x=tf.float32)
    col = parse('{"inputs": {"x": [[1, 2], [3, 4.5]]}, "extra": 1}', x=tf.float32)
    assert row.format == jt.ROW and col.format == jt.COLUMNAR
    np.testing.assert_array_equal(row.inputs["x"], [[1, 2], [3, 4.5]])
    np.testing.assert_array_equal(col.inputs["x"], row.inputs["x"])
    assert row.inputs["x"].dtype == np.float32
    named = parse('{"signature_name": "s", "instances": [{"a": 1, "b": {"b64": "aGk="}}]}',
                  a=tf.int64, b=tf.string)
    assert named.signature_name == "s"
    assert named.inputs["b"].tolist() == [b"hi"] and named.inputs["a"].tolist() == [1]
    nan = parse('{"inputs": [NaN, Infinity]}', x=tf.float32)
    assert np.isnan(nan.inputs["x"][0]) and np.isinf(nan.inputs["x"][1])


@pytest.mark.parametrize("body,dtypes,message", [
    ("", {}, "JSON Parse error: The document is empty"),
    ("  ", {}, "JSON Parse error: The document is empty. at offset: 2"),
    ('{"instances": [1,', {}, "JSON Parse error: Invalid value. at offset: 17"),
    ('{"a" 1}', {}, "JSON Parse error: Missing a colon after a name of object member. at offset: 5"),
    ("[1, 2]", {}, "JSON Value: [1, 2] Is not object"),
    ('{"signature_name": 1, "instances": [1]}', {"x": tf.float32},
     'JSON Value: {\n    "signature_name": 1,\n    "instances": [1]\n} not formatted correctly.'
     " 'signature_name' key must be a string value."),
    ('{"instances": []}', {"x": tf.float32},
     'JSON Value: {\n    "instances": []\n} No values in \'instances\' array'),
    ('{"instances": 1}', {"x": tf.float32},
     'JSON Value: {\n    "instances": 1\n} Expecting \'instances\' to be an list/array'),
    ('{"instances": [1], "inputs": [1]}', {"x": tf.float32},
     'JSON Value: {\n    "instances": [1],\n    "inputs": [1]\n} Not formatted correctly '
     "expecting only one of 'inputs' or 'instances' keys to exist "),
    ('{"x": 1}', {"x": tf.float32}, "Missing 'inputs' or 'instances' key"),
    ('{"instances": ["a"]}', {"x": tf.float32},
     "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
     'JSON Value: "a" Type: String is not of expected type: float'),
    ('{"instances": [[1, 2], [3]]}', {"x": tf.float32},
     "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
     "Expecting tensor size: 2 but got: 1"),
    ('{"instances": [[1, 2], [[3], [4]]]}', {"x": tf.float32},
     "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
     "Expecting shape [2] but got: [2,1]"),
    ('{"inputs": [[1, 2], [3]]}', {"x": tf.float32},
     "Encountered list at unexpected size: 1 at level: 1 expected size: 2"),
    ('{"inputs": [[1, 2], 3]}', {"x": tf.float32},
     "JSON Value: 3 found at incorrect level: 2 in the JSON DOM. Expected at level: 2"),
    ('{"inputs": [1.5]}', {"x": tf.int32},
     "JSON Value: 1.5 Type: Number is not of expected type: int32"),
    ('{"inputs": [1e-7, 1e20]}', {"x": tf.int32},  # doubles written as rapidjson does
     "JSON Value: 1e-7 Type: Number is not of expected type: int32"),
    ('{"inputs": [1e20]}', {"x": tf.int32},
     "JSON Value: 100000000000000000000.0 Type: Number is not of expected type: int32"),
    ('{"inputs": [true]}', {"x": tf.float32},
     "JSON Value: true Type: True is not of expected type: float"),
    ('{"inputs": [{"b64": "!!"}]}', {"x": tf.string}, "Unable to base64 decode"),
    ('{"inputs": [{"b64": "aGk=", "x": 1}]}', {"x": tf.string},
     'JSON Value: {\n    "b64": "aGk=",\n    "x": 1\n} not formatted correctly for base64 data'),
    ('{"inputs": [{"b64": "aGk="}]}', {"x": tf.float32},
     'JSON Value: {\n    "b64": "aGk="\n} Type: Object is not of expected type: float'),
    ('{"inputs": {"a": [1]}}', {"a": tf.float32, "b": tf.float32},
     "Missing named input: b in 'inputs' object."),
    ('{"inputs": [1]}', {"a": tf.float32, "b": tf.float32},
     "inputs is a plain value/list, but expecting an object as multiple input tensors "
     "required as per tensorinfo_map"),
    ('{"instances": [1]}', {"a": tf.float32, "b": tf.float32},
     "instances is a plain list, but expecting list of objects as multiple input tensors "
     "required as per tensorinfo_map"),
    ('{"instances": [{"a": 1}]}', {"a": tf.float32, "b": tf.float32},
     'Failed to process element: 0 of \'instances\' list. JSON object: {\n    "a": 1\n} '
     "keys must be equal to: a,b"),
    ('{"instances": [{"a": 1, "b": 2}, [1]]}', {"a": tf.float32, "b": tf.float32},
     "Expecting object but got list at item 1 of input list"),
    ('{"instances": [{"c": 1}]}', {"a": tf.float32, "b": tf.float32},
     "Failed to process element: 0 key: c of 'instances' list. Error: INVALID_ARGUMENT: "
     "JSON object: does not have named input: c"),
])
def test_bad_request_messages_are_tf_servings(body, dtypes, message):
    assert error_of(body, **dtypes) == message


def test_debug_strings_are_truncated_like_tf_serving():
    long = '{"instances": [' + ", ".join(["123456789"] * 100) + '], "signature_name": 1}'
    message = error_of(long, x=tf.float32)
    value = message[len("JSON Value: "):message.index(" not formatted")]
    assert 256 <= len(value) < 280 and value.startswith('{\n    "instances": [123456789, ')


def test_deeply_nested_json_is_a_400_not_a_crash():
    body = '{"signature_name":' + "[" * 100000 + "]" * 100000 + "}"
    assert error_of(body, x=tf.float32).startswith("JSON Parse error")
