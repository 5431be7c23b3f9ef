"""kvid.models.count_gflops: multiply-accumulates x 1e-9, checked against counts done by hand.

The TensorFlow profiler counts a multiply-add as 2 FLOPs and an element-wise op (bias add) as 1
per element; count_gflops halves the total, so a product counts its MACs exactly and a bias add
half a MAC per element. The values below pin that convention.
"""

import keras
import pytest

import kvid.models
from kvid.models import count_gflops


def single_layer(shape, layer, name="x"):
    x = keras.Input(shape, name=name)
    return keras.Model(x, layer(x))


def test_exported_from_kvid_models():
    assert "count_gflops" in kvid.models.__all__
    assert count_gflops is kvid.models.flops.count_gflops


def test_dense_counts_one_mac_per_weight():
    # [1, 64] x [64, 10]: 64 * 10 = 640 multiply-adds (the profiler says 1280 FLOPs).
    model = single_layer((64,), keras.layers.Dense(10, use_bias=False))
    assert count_gflops(model, (64,)) == pytest.approx(640e-9, rel=1e-12)


def test_bias_add_counts_half_a_mac_per_output():
    # 640 MACs + 10 additions, which the profiler counts as 10 FLOPs = 5 MACs.
    model = single_layer((64,), keras.layers.Dense(10))
    assert count_gflops(model, (64,)) == pytest.approx(645e-9, rel=1e-12)


def test_conv3d_valid_padding():
    # 4x8x8x3 clip, 3x3x3 kernel, 5 filters, no padding: output 2x6x6x5 = 360 values, each
    # 3*3*3*3 = 81 MACs -> 29,160 MACs.
    model = single_layer((4, 8, 8, 3), keras.layers.Conv3D(5, 3, use_bias=False))
    assert count_gflops(model, (4, 8, 8, 3)) == pytest.approx(29160e-9, rel=1e-12)


def test_conv3d_same_padding_counts_the_full_kernel_at_every_output():
    # Output 4x8x8x5 = 1280 values x 81 MACs = 103,680 (the profiler counts the padded taps).
    model = single_layer((4, 8, 8, 3), keras.layers.Conv3D(5, 3, padding="same", use_bias=False))
    assert count_gflops(model, (4, 8, 8, 3)) == pytest.approx(103680e-9, rel=1e-12)


def test_dict_input_shape_for_two_stream_models():
    rgb, flow = keras.Input((16,), name="rgb"), keras.Input((8,), name="flow")
    out = keras.layers.Concatenate()([keras.layers.Dense(4, use_bias=False)(rgb),
                                      keras.layers.Dense(4, use_bias=False)(flow)])
    model = keras.Model({"rgb": rgb, "flow": flow}, out)
    # 16*4 + 8*4 = 96 MACs; the concatenation is free.
    assert count_gflops(model, {"rgb": (16,), "flow": (8,)}) == pytest.approx(96e-9, rel=1e-12)
