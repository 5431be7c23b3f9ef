"""Fixtures for the model zoo tests: tiny deterministic inputs for any registered model."""

import numpy as np
import pytest


def _tiny_array(shape, rng):
    return rng.uniform(-1.0, 1.0, size=shape).astype("float32")


@pytest.fixture
def make_inputs():
    """make_inputs(input_shape, batch=2, seed=0): float32 inputs (a dict for two-input models)."""

    def make(input_shape, batch=2, seed=0):
        rng = np.random.default_rng(seed)
        if isinstance(input_shape, dict):
            return {k: _tiny_array((batch, *v), rng) for k, v in sorted(input_shape.items())}
        return _tiny_array((batch, *input_shape), rng)

    return make
