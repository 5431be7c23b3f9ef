"""The TF Serving REST JSON codec: request bodies to tensors, tensors to response bodies.

A port of ``tensorflow_serving/util/json_tensor.cc`` (@9d981c5c): the same request rules,
the same error texts, and responses written the way rapidjson's ``PrettyWriter`` writes
them, so a REST client sees the same bytes from ``kvid serve`` as from TF Serving.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import decimal
import json
import math
import re
import struct
from typing import Any, Callable

import grpc
import numpy as np
import tensorflow as tf

from kvid.serving.errors import ServingError, invalid_argument

ROW = "row"  # "instances" in, "predictions" out
COLUMNAR = "columnar"  # "inputs" in, "outputs" out

_INDENT = "    "
_DEBUG_LIMIT = 256  # kMaxJsonDebugStringBytes
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
            "\t": "\\t"}
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')
# TF's DataTypeString differs from the Python dtype name only for these.
_TF_TYPE_NAMES = {"float32": "float", "float64": "double", "float16": "half"}


def type_name(dtype: tf.DType) -> str:
    """``DataTypeString``: the dtype name TF Serving puts in error messages."""
    return _TF_TYPE_NAMES.get(dtype.name, dtype.name)


def _escape(text: str) -> str:
    def one(m):
        c = m.group()
        return _ESCAPES.get(c) or "\\u%04X" % ord(c)

    return '"' + _NEEDS_ESCAPE.sub(one, text) + '"'


def _rapidjson_double(value: float) -> str | None:
    """rapidjson ``Writer::Double``: shortest digits, decimal up to 1e21, ``1e-7`` style."""
    if not math.isfinite(value):
        return None  # rapidjson refuses NaN/Inf without kWriteNanAndInfFlag
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return sign + "0.0"
    # Shortest round-trip digits (as Grisu2 finds them): value = 0.<digits> * 10**kk.
    exact = decimal.Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, exact.digits))
    kk = len(digits) + exact.exponent
    n = len(digits)
    if n <= kk <= 21:
        return sign + digits + "0" * (kk - n) + ".0"
    if 0 < kk <= 21:
        return sign + digits[:kk] + "." + digits[kk:]
    if -6 < kk <= 0:
        return sign + "0." + "0" * -kk + digits
    body = digits if n == 1 else digits[0] + "." + digits[1:]
    return f"{sign}{body}e{kk - 1}"


def write_decimal(value: float, single: bool) -> str:
    """``WriteDecimal``: six significant digits when that round-trips, else full precision."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    text = "%g" % value
    back = float(text)
    if single:
        back = struct.unpack("f", struct.pack("f", back))[0]
    if back != value:
        text = "%.*g" % (9 if single else 17, value)
    if "." not in text and "e" not in text:
        text += ".0"
    return text


class JsonWriter:
    """rapidjson ``PrettyWriter`` (4-space indent, optional single-line arrays).

    ``limit`` mimics ``JsonWriterWithLimit``: once the output reaches it, every further
    event is refused, which truncates debug strings the way TF Serving's errors do.
    """

    def __init__(self, *, single_line: bool = False, limit: int | None = None):
        self.parts: list[str] = []
        self.size = 0
        self.stack: list[list] = []  # [in_array, value_count] per open container
        self.single_line = single_line
        self.limit = limit

    def text(self) -> str:
        return "".join(self.parts)

    def _put(self, s: str) -> None:
        self.parts.append(s)
        self.size += len(s)

    def _ok(self) -> bool:
        return self.limit is None or self.size < self.limit

    def _prefix(self) -> None:
        if not self.stack:
            return
        level = self.stack[-1]
        in_array, count = level
        if in_array:
            if count > 0:
                self._put(", " if self.single_line else ",")
            if not self.single_line:
                self._put("\n" + _INDENT * len(self.stack))
        else:
            if count > 0:
                self._put(",\n" if count % 2 == 0 else ": ")
            else:
                self._put("\n")
            if count % 2 == 0:
                self._put(_INDENT * len(self.stack))
        level[1] += 1

    def raw(self, text: str) -> bool:
        if not self._ok():
            return False
        self._prefix()
        self._put(text)
        return True

    def string(self, text: str) -> bool:
        return self.raw(_escape(text))

    key = string

    def start(self, array: bool) -> bool:
        if not self._ok():
            return False
        self._prefix()
        self._put("[" if array else "{")
        self.stack.append([array, 0])
        return True

    def end(self) -> bool:
        if not self._ok():
            return False
        array, count = self.stack.pop()
        if count and not (array and self.single_line):
            self._put("\n" + _INDENT * len(self.stack))
        self._put("]" if array else "}")
        return True

    def value(self, v: Any) -> bool:
        """Writes a parsed JSON value (``Value::Accept``); False once the limit is hit."""
        if isinstance(v, dict):
            if not self.start(array=False):
                return False
            for k, item in v.items():
                if not (self.key(k) and self.value(item)):
                    return False
            return self.end()
        if isinstance(v, list):
            if not self.start(array=True):
                return False
            return all(self.value(item) for item in v) and self.end()
        if isinstance(v, str):
            return self.string(v)
        if v is None or isinstance(v, bool):
            return self.raw({None: "null", True: "true", False: "false"}[v])
        if isinstance(v, int):
            return self.raw(str(v))
        text = _rapidjson_double(v)
        return text is not None and self.raw(text)

    def tensor(self, values: Any, dtype: np.dtype, as_bytes: bool) -> None:
        """``AddTensorValues`` over ``ndarray.tolist()`` output (nested lists or a scalar)."""
        if isinstance(values, list):
            self.start(array=True)
            for v in values:
                self.tensor(v, dtype, as_bytes)
            self.end()
        elif dtype.kind == "f":
            self.raw(write_decimal(values, dtype.itemsize <= 4))
        elif dtype.kind == "b":
            self.raw("true" if values else "false")
        elif dtype.kind in "iu":
            self.raw(str(values))
        elif as_bytes:
            self.start(array=False)
            self.key("b64")
            self.string(base64.b64encode(values).decode("ascii"))
            self.end()
        else:
            self.string(values.decode("utf-8", "surrogateescape"))


def debug_string(value: Any) -> str:
    """``JsonValueToDebugString``: single-line arrays, truncated near 256 bytes."""
    writer = JsonWriter(single_line=True, limit=_DEBUG_LIMIT)
    writer.value(value)
    return writer.text()


def error_body(message: str) -> bytes:
    """``MakeJsonFromStatus``: ``{"error": ...}`` as TF Serving pretty-prints it."""
    writer = JsonWriter()
    writer.start(array=False)
    writer.key("error")
    writer.string(message)
    writer.end()
    return writer.text().encode("utf-8", "surrogateescape")


# ---------------------------------------------------------------------------- parsing

_PARSE_ERRORS = {
    "Expecting value": "Invalid value.",
    "Expecting property name enclosed in double quotes": "Missing a name for object member.",
    "Expecting ':' delimiter": "Missing a colon after a name of object member.",
    "Unterminated string starting at": "Missing a closing quotation mark in string.",
    "Invalid control character at": "Invalid encoding in string.",
    "Invalid \\escape": "Invalid escape character in string.",
    "Invalid \\uXXXX escape": "Incorrect hex digit after \\u escape in string.",
}
_WS = " \t\n\r"


def _innermost_container(text: str, pos: int) -> str:
    """'[' or '{': the container open at ``pos`` (to word rapidjson's comma errors)."""
    stack, in_string, escaped = [], False, False
    for c in text[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            stack.append(c)
        elif c in "]}" and stack:
            stack.pop()
    return stack[-1] if stack else "["


def parse_json(body: bytes) -> dict:
    """``ParseJson``: the body must be one JSON object; trailing bytes are ignored."""
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    text = body.decode("utf-8", "surrogateescape")
    start = len(text) - len(text.lstrip(_WS))
    if start == len(text):
        raise invalid_argument(
            f"JSON Parse error: The document is empty. at offset: {len(body)}")
    try:
        doc, _ = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError as e:
        if e.msg == "Expecting ',' delimiter":
            what = ("Missing a comma or ']' after an array element."
                    if _innermost_container(text, e.pos) == "[" else
                    "Missing a comma or '}' after an object member.")
        else:
            what = _PARSE_ERRORS.get(e.msg, "Invalid value.")
        offset = len(text[:e.pos].encode("utf-8", "surrogateescape"))
        raise invalid_argument(f"JSON Parse error: {what} at offset: {offset}") from None
    except RecursionError:  # rapidjson parses iteratively; Python's parser recurses
        raise invalid_argument("JSON Parse error: The document is nested too deeply.") from None
    except ValueError:  # an integer of over 4,300 digits (Python's int-string limit)
        raise number_too_big(text) from None
    if "\\u" in text:
        _check_surrogates(text)
    if not isinstance(doc, dict):
        raise invalid_argument(f"JSON Value: {debug_string(doc)} Is not object")
    return doc


_SURROGATE = re.compile(r"(\\+)u[dD]([89a-fA-F])[0-9a-fA-F]{2}")
_LOW_NEXT = re.compile(r"\\u[dD][c-fC-F][0-9a-fA-F]{2}")


def _check_surrogates(text: str) -> None:
    """rapidjson refuses a ``\\uD800``-``\\uDFFF`` escape that is not a high surrogate
    followed by a low one; Python's parser keeps it as a lone surrogate, which no UTF-8
    writer can encode (it was a 500 when an error message quoted it)."""
    pos = 0
    while (m := _SURROGATE.search(text, pos)) is not None:
        pos = m.end()
        if len(m.group(1)) % 2 == 0:  # an escaped backslash, then a plain "uD8.."
            continue
        escape = m.start() + len(m.group(1)) - 1
        if m.group(2) in "89abAB" and _LOW_NEXT.match(text, m.end()):
            pos = m.end() + 6
            continue
        offset = len(text[:escape].encode("utf-8", "surrogateescape"))
        raise invalid_argument("JSON Parse error: The surrogate pair in string is invalid. "
                               f"at offset: {offset}")


_LONG_INTEGER = re.compile(r"-?\d{309,}")  # beyond any double (1.8e308)


def number_too_big(text: str) -> ServingError:
    """rapidjson's ``kParseErrorNumberTooBig`` at the offset where the number starts.

    Python parses such integers exactly (up to 4,300 digits); rapidjson turns any integer
    beyond 64 bits into a double and fails when that overflows, so this is its error.
    """
    m = _LONG_INTEGER.search(text)
    offset = len(text[:m.start()].encode("utf-8", "surrogateescape")) if m else 0
    return invalid_argument(
        f"JSON Parse error: Number too big to be stored in double. at offset: {offset}")


class _NumberTooBig(Exception):
    """An integer that no double holds reached a tensor; reworded where the text is."""


def signature_name(doc: dict) -> str:
    """``FillSignature``: the optional ``signature_name`` ("" when absent)."""
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid_argument(
            f"JSON Value: {debug_string(doc)} not formatted correctly. "
            "'signature_name' key must be a string value.")
    return name


# ------------------------------------------------------------------- JSON -> tensors


def _json_type(v: Any) -> str:
    if v is None:
        return "Null"
    if isinstance(v, bool):
        return "True" if v else "False"
    return {dict: "Object", list: "Array", str: "String"}.get(type(v), "Number")


def _type_error(v: Any, dtype: tf.DType) -> ServingError:
    return invalid_argument(f"JSON Value: {debug_string(v)} Type: {_json_type(v)} "
                            f"is not of expected type: {type_name(dtype)}")


def is_b64(v: Any) -> bool:
    return isinstance(v, dict) and len(v) == 1 and isinstance(v.get("b64"), str)


def decode_b64(v: Any) -> bytes:
    """``JsonDecodeBase64Object``: ``{"b64": "..."}`` only, std alphabet, padding optional."""
    if not is_b64(v):
        raise invalid_argument(
            f"JSON Value: {debug_string(v)} not formatted correctly for base64 data")
    return _unbase64(v["b64"])


def _unbase64(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise invalid_argument("Unable to base64 decode") from None


def _int_range(lo: int, hi: int) -> Callable[[Any], bool]:
    return lambda v: type(v) is int and lo <= v <= hi


_I32 = _int_range(-2**31, 2**31 - 1)
# Which JSON values AddValueToTensor accepts for each dtype (rapidjson IsInt, IsUint, ...).
_ACCEPTS: dict[tf.DType, Callable[[Any], bool]] = {
    tf.float32: lambda v: type(v) in (int, float),
    tf.float64: lambda v: type(v) in (int, float),
    tf.int32: _I32, tf.int16: _I32, tf.int8: _I32, tf.uint8: _I32,
    tf.int64: _int_range(-2**63, 2**63 - 1),
    tf.uint32: _int_range(0, 2**32 - 1),
    tf.uint64: _int_range(0, 2**64 - 1),
    tf.bool: lambda v: type(v) is bool,
    tf.string: lambda v: type(v) is str,
}


class _Leaves:
    """Converts and checks the leaf values of one tensor (``AddValueToTensor``)."""

    def __init__(self, dtype: tf.DType):
        self.dtype = dtype
        self.accepts = _ACCEPTS.get(dtype)
        self.is_string = dtype == tf.string
        self.values: list = []

    def add(self, v: Any) -> None:
        if isinstance(v, dict):
            if not self.is_string:
                raise _type_error(v, self.dtype)
            self.values.append(decode_b64(v))
        elif self.accepts is None:
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"Conversion of JSON Value: "
                               f"{debug_string(v)} to type: {type_name(self.dtype)}")
        elif not self.accepts(v):
            raise _type_error(v, self.dtype)
        else:
            self.values.append(v.encode("utf-8", "surrogateescape") if self.is_string else v)

    def add_row(self, row: list) -> bool:
        """Fast path for a whole innermost list of valid values; False to go one by one."""
        if self.is_string and all(map(is_b64, row)):
            self.values.extend(_unbase64(v["b64"]) for v in row)
        elif self.accepts is None or not all(map(self.accepts, row)):
            return False
        elif self.is_string:
            self.values.extend(v.encode("utf-8", "surrogateescape") for v in row)
        else:
            self.values.extend(row)
        return True

    def array(self, shape: list[int]) -> np.ndarray:
        if self.is_string:
            arr = np.empty(len(self.values), dtype=object)
            arr[:] = self.values
            return arr.reshape(shape)
        # Through int64 like TensorProto.int_val, so out-of-range uint8 wraps as in C++.
        dtype = self.dtype
        wide = np.float64 if dtype.is_floating else (
            np.uint64 if dtype == tf.uint64 else np.int64)
        try:
            values = np.asarray(self.values, dtype=wide)
        except OverflowError:  # ints are range-checked; only a float tensor gets here
            raise _NumberTooBig() from None
        return values.astype(dtype.as_numpy_dtype).reshape(shape)


def _dense_shape(v: Any) -> list[int]:
    """``GetDenseTensorShape``: sizes along the first element at each level."""
    shape = []
    while isinstance(v, list):
        shape.append(len(v))
        if not v:
            break
        v = v[0]
    return shape


def _fill(v: Any, level: int, shape: list[int], leaves: _Leaves) -> None:
    """``FillTensorProto``: checks the value is a dense tensor of ``shape``; collects leaves."""
    rank = len(shape)
    if not isinstance(v, list):
        if level != rank:
            raise invalid_argument(
                f"JSON Value: {debug_string(v)} found at incorrect level: {level + 1} "
                f"in the JSON DOM. Expected at level: {rank}")
        leaves.add(v)
        return
    if level >= rank:
        raise invalid_argument(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(v) != shape[level]:
        raise invalid_argument(f"Encountered list at unexpected size: {len(v)} at level: "
                               f"{level} expected size: {shape[level]}")
    if level == rank - 1 and leaves.add_row(v):
        return
    for item in v:
        _fill(item, level + 1, shape, leaves)


def tensor_from_json(v: Any, dtype: tf.DType) -> tuple[np.ndarray, int]:
    """One JSON value -> (array, number of values), as ``GetDenseTensorShape`` + fill."""
    shape = _dense_shape(v)
    leaves = _Leaves(dtype)
    _fill(v, 0, shape, leaves)
    return leaves.array(shape), len(leaves.values)


@dataclasses.dataclass
class PredictRequest:
    """A parsed REST predict body: what the gRPC ``PredictRequest`` would carry."""

    signature_name: str
    inputs: dict[str, np.ndarray]
    format: str


def _from_instances(instances: list, specs: dict[str, tf.DType]) -> dict[str, np.ndarray]:
    """``FillTensorMapFromInstancesList``: stack row-format items into batched tensors."""
    if not isinstance(instances[0], dict) and len(specs) > 1:
        raise invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple input "
            "tensors required as per tensorinfo_map")

    def is_object(v):
        return isinstance(v, dict) and not is_b64(v)

    objects = is_object(instances[0])
    names = sorted(specs)
    rows: dict[str, list[np.ndarray]] = {}
    first: dict[str, tuple[int, list[int]]] = {}

    def add(item, name):
        if name not in specs:
            raise invalid_argument(f"JSON object: does not have named input: {name}")
        arr, size = tensor_from_json(item, specs[name])
        if name not in first:
            first[name] = (size, list(arr.shape))
        elif first[name][0] != size:
            raise invalid_argument(f"Expecting tensor size: {first[name][0]} but got: {size}")
        elif first[name][1] != list(arr.shape):
            raise invalid_argument(f"Expecting shape {_shape_str(first[name][1])} "
                                   f"but got: {_shape_str(arr.shape)}")
        rows.setdefault(name, []).append(arr)

    for i, elem in enumerate(instances):
        if objects:
            if not is_object(elem):
                raise invalid_argument(f"Expecting object but got list at item {i} of input list")
            for name, item in elem.items():
                try:
                    add(item, name)
                except ServingError as e:
                    raise invalid_argument(
                        f"Failed to process element: {i} key: {name} of 'instances' list. "
                        f"Error: {e.status_string()}") from None
            if sorted(elem) != names:
                raise invalid_argument(
                    f"Failed to process element: {i} of 'instances' list. JSON object: "
                    f"{debug_string(elem)} keys must be equal to: {','.join(names)}")
        else:
            if is_object(elem):
                raise invalid_argument(
                    f"Expecting value/list but got object at item {i} of input list")
            try:
                add(elem, names[0])
            except ServingError as e:
                raise invalid_argument(f"Failed to process element: {i} of 'instances' list. "
                                       f"Error: {e.status_string()}") from None
    return {name: np.stack(arrs) for name, arrs in rows.items()}


def _shape_str(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _from_inputs(value: Any, specs: dict[str, tf.DType]) -> dict[str, np.ndarray]:
    """``FillTensorMapFromInputsMap``: columnar ``inputs``, a bare value or a name map."""
    if not isinstance(value, dict) or is_b64(value):
        if len(specs) > 1:
            raise invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple input "
                "tensors required as per tensorinfo_map")
        (name, dtype), = specs.items()
        return {name: tensor_from_json(value, dtype)[0]}
    out = {}
    for name in sorted(specs):
        if name not in value:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        out[name] = tensor_from_json(value[name], specs[name])[0]
    return out


def parse_predict_request(
    body: bytes, input_dtypes: Callable[[str], dict[str, tf.DType]]
) -> PredictRequest:
    """``FillPredictRequestFromJson``.

    ``input_dtypes(signature_name)`` looks up the servable and signature (and raises its
    errors), which is why it is called only after the body has parsed, as in TF Serving.
    """
    doc = parse_json(body)
    try:
        return _predict_request(doc, input_dtypes)
    except _NumberTooBig:
        raise number_too_big(body.decode("utf-8", "surrogateescape")) from None


def _predict_request(doc: dict, input_dtypes) -> PredictRequest:
    signame = signature_name(doc)
    specs = input_dtypes(signame)
    if not specs:
        raise invalid_argument(
            f"Failed to get input map for signature: {signame or 'DEFAULT'}")
    both = ("Not formatted correctly expecting only one of 'inputs' or 'instances' "
            "keys to exist ")
    if "instances" in doc:
        if "inputs" in doc:
            raise invalid_argument(f"JSON Value: {debug_string(doc)} {both}")
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise invalid_argument(
                f"JSON Value: {debug_string(doc)} Expecting 'instances' to be an list/array")
        if not instances:
            raise invalid_argument(
                f"JSON Value: {debug_string(doc)} No values in 'instances' array")
        return PredictRequest(signame, _from_instances(instances, specs), ROW)
    if "inputs" in doc:
        return PredictRequest(signame, _from_inputs(doc["inputs"], specs), COLUMNAR)
    raise invalid_argument("Missing 'inputs' or 'instances' key")


def check_examples_request(doc: dict) -> None:
    """The body checks of ``FillClassifyRegressRequestFromJson`` (classify/regress)."""
    examples = doc.get("examples")
    if examples is None and "examples" not in doc:
        raise invalid_argument(f"JSON Value: {debug_string(doc)} When method is classify, "
                               "key 'examples' is expected and was not found")
    if not isinstance(examples, list):
        raise invalid_argument(
            f"JSON Value: {debug_string(doc)} Expecting 'examples' value to be an list/array")
    if not examples:
        raise invalid_argument(f"JSON Value: {debug_string(doc)} 'examples' value is an "
                               "empty array")


# ------------------------------------------------------------------- tensors -> JSON


def _is_bytes_output(name: str, arr: np.ndarray) -> bool:
    """``IsNamedTensorBytes``: string outputs named ``*_bytes`` are sent as base64."""
    return arr.dtype == object and name.endswith("_bytes")


def make_json(outputs: dict[str, np.ndarray], fmt: str) -> bytes:
    """``MakeJsonFromTensors``: ``predictions`` for row requests, ``outputs`` for columnar."""
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    items = sorted(outputs.items())
    writer = JsonWriter()
    writer.start(array=False)
    multi = len(items) > 1
    if fmt == ROW:
        batch = -1
        for name, arr in items:
            if arr.ndim == 0:
                raise invalid_argument(f"Tensor name: {name} has no shape information ")
            if batch >= 0 and batch != arr.shape[0]:
                raise invalid_argument(f"Tensor name: {name} has inconsistent batch size: "
                                       f"{arr.shape[0]} expecting: {batch}")
            batch = arr.shape[0]
        lists = [(name, arr.tolist(), arr.dtype, _is_bytes_output(name, arr))
                 for name, arr in items]
        writer.key("predictions")
        writer.start(array=True)
        for i in range(batch):
            if multi:
                writer.start(array=False)
            writer.single_line = True
            for name, values, dtype, as_bytes in lists:
                if multi:
                    writer.key(name)
                writer.tensor(values[i], dtype, as_bytes)
            writer.single_line = False
            if multi:
                writer.end()
        writer.end()
    else:
        writer.key("outputs")
        if multi:
            writer.start(array=False)
        for name, arr in items:
            if multi:
                writer.key(name)
            writer.tensor(arr.tolist(), arr.dtype, _is_bytes_output(name, arr))
        if multi:
            writer.end()
    writer.end()
    return writer.text().encode("utf-8", "surrogateescape")
