"""One error type for the REST and gRPC front ends, carrying a canonical status code.

The code decides the HTTP status exactly as TF Serving's ``http_server.cc``
(``ToHTTPStatusCode``) does, and is passed through unchanged as the gRPC status, so both
front ends report the same failure the same way.
"""

from __future__ import annotations

import grpc

# HTTP status of each canonical code: TF Serving model_servers/http_server.cc.
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


class ServingError(Exception):
    """A request failure: ``code`` is a ``grpc.StatusCode``, ``message`` is the client text."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    def status_string(self) -> str:
        """``absl::Status::ToString()``, which TF Serving nests inside some messages."""
        return f"{self.code.name}: {self.message}"

    @classmethod
    def from_tf(cls, error) -> "ServingError":
        """Maps a ``tf.errors.OpError`` (whose codes are the canonical ones) to this type."""
        return cls(_BY_NUMBER.get(error.error_code, grpc.StatusCode.UNKNOWN), error.message)


def invalid_argument(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)
