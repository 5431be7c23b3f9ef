"""Argument checks shared by the configs (frozen dataclasses) and the command line.

One rule per kind of value, so ``IngestConfig(fps=inf)`` in Python and ``kvid ingest
--fps inf`` on the command line refuse it with the same words: numbers must be finite,
counts must be >= 1 where 0 makes no sense, ports in 0..65535. ``kvid.cliargs`` wraps
these as argparse types; library code calls them directly.
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Any


class MissingExtra(ImportError):
    """An optional extra the user asked for is not installed (a usage error: exit 2)."""


def describe(*, integer: bool = False, minimum: float | None = None,
             maximum: float | None = None, exclusive: bool = False) -> str:
    """What ``number`` accepts, in words: ``an integer >= 1``, ``a finite number > 0``."""
    parts = ["an integer" if integer else "a finite number"]
    if minimum is not None:
        parts.append(f"{'>' if exclusive else '>='} {minimum}")
    if maximum is not None:
        parts.append(f"{'and ' if minimum is not None else ''}<= {maximum}")
    return " ".join(parts)


def number(name: str, value: Any, *, integer: bool = False, minimum: float | None = None,
           maximum: float | None = None, exclusive: bool = False,
           optional: bool = False) -> Any:
    """``value`` if it is a finite number within the bounds, else ``ValueError``.

    ``exclusive`` makes ``minimum`` a strict bound (``> 0``). ``optional`` lets None pass
    (a setting left at its default). NaN and infinities never pass: a non-finite frame
    rate or learning rate only ever hangs a loop or poisons a run.
    """
    if value is None and optional:
        return value
    rule = describe(integer=integer, minimum=minimum, maximum=maximum, exclusive=exclusive)
    wanted = f"{name} must be {rule}. Received: {name}={value!r}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(wanted)
    if integer and not isinstance(value, numbers.Integral):
        raise ValueError(wanted)
    if not math.isfinite(value):
        raise ValueError(wanted)
    if minimum is not None and (value <= minimum if exclusive else value < minimum):
        raise ValueError(wanted)
    if maximum is not None and value > maximum:
        raise ValueError(wanted)
    return value


def positive(name: str, value: Any, *, integer: bool = False, optional: bool = False) -> Any:
    """> 0 for a float, >= 1 for an integer."""
    if integer:
        return number(name, value, integer=True, minimum=1, optional=optional)
    return number(name, value, minimum=0, exclusive=True, optional=optional)


def non_negative(name: str, value: Any, *, integer: bool = False,
                 optional: bool = False) -> Any:
    return number(name, value, integer=integer, minimum=0, optional=optional)


def port(name: str, value: Any) -> int:
    """A TCP port; 0 asks the OS for a free one."""
    return number(name, value, integer=True, minimum=0, maximum=65535)


def regex(name: str, pattern: str) -> str:
    """``pattern`` if it compiles, else ``ValueError`` naming the flag and the reason."""
    try:
        re.compile(pattern)
    except re.error as e:
        raise ValueError(f"{name} is not a valid regular expression ({e}). "
                         f"Received: {name}={pattern!r}") from None
    return pattern
