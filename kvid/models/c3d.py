"""C3D: 3x3x3 convolutions all the way (Tran et al. 2015).

Tran et al., "Learning Spatiotemporal Features with 3D Convolutional Networks", ICCV 2015
(https://arxiv.org/abs/1412.0767).

```
[B,16,112,112,3] -> conv1 64 -> pool1 1x2x2 -> conv2 128 -> pool2 -> conv3a,b 256 -> pool3
  -> conv4a,b 512 -> pool4 -> conv5a,b 512 -> pool5 -> fc6 4096 -> fc7 4096 -> logits
```
"""

from __future__ import annotations

import keras
from keras import layers

from kvid.models.layers import (
    check_input_shape,
    check_int_tuple,
    check_positive_float,
    check_positive_int,
    check_rate,
    conv_bn_act,
    fc_head,
    scaled,
    video_input,
)

# (name, filters, convs) per stage; pool1 keeps time, pools 2-5 halve it.
C3D_STAGES = (("conv1", 64, 1), ("conv2", 128, 1), ("conv3", 256, 2), ("conv4", 512, 2),
              ("conv5", 512, 2))


def build_c3d(input_shape=(16, 112, 112, 3), num_classes: int = 487, *,
              width_multiplier: float = 1.0, fc_units=(4096, 4096), dropout: float = 0.5,
              batch_norm: bool = False, name: str = "c3d") -> keras.Model:
    """C3D (Tran et al. 2015): 8 conv layers 3x3x3, 5 max-pools, two 4096-unit FC layers.

    Args:
        input_shape: ``(T, H, W, 3)``; the paper uses ``(16, 112, 112, 3)`` crops of 128x171.
        num_classes: 487 for Sports-1M (the reference), 101 for UCF101.
        width_multiplier: scales every conv's filters (1.0 = paper).
        fc_units: widths of fc6 and fc7 (one or more layers).
        dropout: dropout after every FC layer (0.5 in the paper).
        batch_norm: add BatchNorm after every conv (not in the paper; helps from scratch).

    Pools use "same" padding, like Caffe's ceil mode, so pool5 gives 1x4x4x512 = 8192 fc6
    inputs at the reference input.
    """
    input_shape = check_input_shape(input_shape, channels=3)
    check_positive_int(num_classes, "num_classes")
    fc_units = check_int_tuple(fc_units, "fc_units")
    check_rate(dropout)
    check_positive_float(width_multiplier, "width_multiplier")

    inputs = video_input(input_shape, "rgb")
    x = inputs
    for stage, (stage_name, filters, convs) in enumerate(C3D_STAGES):
        width = scaled(filters, width_multiplier)
        for i in range(convs):
            suffix = "abc"[i] if convs > 1 else ""
            x = conv_bn_act(x, width, 3, use_bn=batch_norm, name=f"{stage_name}{suffix}")
        pool = (1, 2, 2) if stage == 0 else (2, 2, 2)
        x = layers.MaxPooling3D(pool, strides=pool, padding="same", name=f"pool{stage + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    logits = fc_head(x, num_classes, fc_units=fc_units, dropout=dropout)
    return keras.Model(inputs, logits, name=name)
