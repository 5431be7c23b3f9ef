"""argparse pieces every ``kvid`` verb shares: one-line errors and checked number types.

The types apply ``kvid.validate``'s rules at parse time, so ``--fps inf`` or
``--clip-frames 0`` ends in one line and exit code 2 before any work starts.
"""

from __future__ import annotations

import argparse
import json
from typing import Callable

from kvid import validate


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``kvid train: error: ... (see 'kvid train --help')``."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _parse(text: str, integer: bool):
    try:
        return int(text) if integer else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if integer else 'a number'}, got {text!r}") from None


def number_type(*, integer: bool = False, minimum: float | None = None,
                maximum: float | None = None, exclusive: bool = False
                ) -> Callable[[str], int | float]:
    """An argparse ``type=``: parses, then applies ``validate.number``'s bounds."""

    def parse(text: str):
        value = _parse(text, integer)
        try:
            return validate.number("value", value, integer=integer, minimum=minimum,
                                   maximum=maximum, exclusive=exclusive)
        except ValueError:
            wanted = validate.describe(integer=integer, minimum=minimum, maximum=maximum,
                                       exclusive=exclusive)
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}") from None

    parse.__name__ = "int" if integer else "float"
    return parse


positive_int = number_type(integer=True, minimum=1)
non_negative_int = number_type(integer=True, minimum=0)
positive_float = number_type(minimum=0, exclusive=True)
non_negative_float = number_type(minimum=0)
finite_float = number_type()
any_int = number_type(integer=True)
port = number_type(integer=True, minimum=0, maximum=65535)
fraction = number_type(minimum=0, maximum=1)


def positive_floats(text: str) -> list[float]:
    """A comma-separated list of finite numbers > 0 (``--weights 1,1.5``)."""
    return [positive_float(part.strip()) for part in text.split(",")]


def json_object(text: str) -> dict:
    """A JSON object (``'{"units": 64}'``); anything else is a one-line error."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e.msg} at offset {e.pos}): "
                                         f"{text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"expected a JSON object like '{{\"units\": 64}}', got {text!r}")
    return value


def regex(text: str) -> str:
    try:
        return validate.regex("pattern", text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).split(". Received")[0]) from None
