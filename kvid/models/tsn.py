"""TSN: temporal segment networks, one shared 2D CNN over K sparse snippets, then consensus.

Wang et al., "Temporal Segment Networks: Towards Good Practices for Deep Action
Recognition", ECCV 2016 (https://arxiv.org/abs/1608.00859).

```
video split into K segments, one snippet sampled per segment (by the data pipeline):
rgb  [B, K, H, W, 3]      -> shared CNN per snippet -> logits [B, K, C] -> average -> [B, C]
flow [B, K*L, H, W, 2]    -> K stacks of L flows [B, K, H, W, 2L] -> shared CNN -> ... -> average
rgbdiff [B, K*L, H, W, 3] -> K stacks of L RGB differences [B, K, H, W, 3L] -> as flow
```
The RGB and flow networks are trained separately and their scores fused at test time
(weights 1 : 1.5 in the paper); the model here is one modality.
"""

from __future__ import annotations

import keras

from kvid.models.backbones import build_backbone, frame_logits
from kvid.models.layers import (
    StackFrames,
    check_modality_input,
    check_positive_int,
    check_rate,
    video_input,
)


def build_tsn(input_shape=(3, 224, 224, 3), num_classes: int = 101, *, modality: str = "rgb",
              num_segments: int | None = None, backbone="small_cnn", backbone_weights=None,
              backbone_trainable: bool = True, small_cnn_widths=(16, 32, 64, 128),
              input_normalization: str = "imagenet", dropout: float = 0.8,
              name: str = "tsn") -> keras.Model:
    """Temporal segment network (Wang et al. 2016) with average segmental consensus.

    Args:
        input_shape: RGB ``(K, H, W, 3)``, one frame per segment (K=3 in the paper); flow
            ``(K * L, H, W, 2)``: L consecutive flow frames per segment (L=5 in the paper);
            rgbdiff ``(K * L, H, W, 3)``: L RGB differences per segment, stacked as flow.
        num_classes: number of classes.
        modality: ``"rgb"``, ``"flow"`` or ``"rgbdiff"``.
        num_segments: K for stacked inputs (default 3); RGB takes K from ``input_shape``.
        backbone, backbone_weights, backbone_trainable, small_cnn_widths, input_normalization:
            the shared snippet CNN (see :func:`kvid.models.backbones.build_backbone`; the paper
            uses BN-Inception).
        dropout: before the logits layer (0.8 in the paper).
    """
    input_shape = check_modality_input(input_shape, modality)
    check_positive_int(num_classes, "num_classes")
    check_rate(dropout)
    inputs = video_input(input_shape, modality)
    x = inputs
    if modality != "rgb":  # flow, RGB difference: L stacked per segment
        segments = check_positive_int(num_segments or 3, "num_segments")
        if input_shape[0] % segments:
            raise ValueError(f"{modality} frames must be a multiple of num_segments="
                             f"{segments}. Received: input_shape={input_shape}")
        x = StackFrames(segments, name=f"{modality}_stack")(x)
    net = build_backbone(backbone, x.shape[2:], weights=backbone_weights,
                         input_normalization=input_normalization, trainable=backbone_trainable,
                         small_cnn_widths=small_cnn_widths, name="backbone")
    return keras.Model(inputs, frame_logits(net, x, num_classes, dropout=dropout), name=name)
