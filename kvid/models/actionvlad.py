"""ActionVLAD: trainable VLAD pooling of per-frame CNN descriptors over space and time.

Girdhar, Ramanan, Gupta, Sivic & Russell, "ActionVLAD: Learning spatio-temporal
aggregation for action classification", CVPR 2017 (https://arxiv.org/abs/1704.02895);
the VLAD layer is NetVLAD (Arandjelovic et al., CVPR 2016).

```
frames [B,T,H,W,3] -> 2D CNN per frame -> [B,T,h,w,D] -> (1x1 reduce) -> T*h*w descriptors
  -> soft-assign to K anchors, sum residuals -> [K, D] -> intra L2 -> flatten -> L2 -> logits
```
"""

from __future__ import annotations

import keras
from keras import layers, ops

from kvid.models.backbones import build_backbone, frame_feature_maps
from kvid.models.layers import (
    check_input_shape,
    check_positive_int,
    check_rate,
    classifier_head,
    conv_bn_act,
    video_input,
)


@keras.saving.register_keras_serializable(package="kvid")
class NetVLAD(layers.Layer):
    """VLAD pooling of descriptors ``[B, N, D]`` into ``[B, K * D]`` with learned anchors.

    ``a_k(x) = softmax_k(w_k . x + b_k)``; ``V[k] = sum_x a_k(x) (x - c_k)``; each ``V[k]`` is L2
    normalized (intra-normalization), then the whole vector.
    """

    def __init__(self, num_clusters: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.num_clusters = int(num_clusters)

    def build(self, input_shape):
        dim = input_shape[-1]
        self.centers = self.add_weight(name="centers", shape=(self.num_clusters, dim),
                                       initializer="glorot_uniform")
        self.assign_kernel = self.add_weight(name="assign_kernel", shape=(dim, self.num_clusters),
                                             initializer="glorot_uniform")
        self.assign_bias = self.add_weight(name="assign_bias", shape=(self.num_clusters,),
                                           initializer="zeros")

    def call(self, x):
        assign = ops.softmax(ops.matmul(x, self.assign_kernel) + self.assign_bias, axis=-1)
        weighted_sum = ops.einsum("bnk,bnd->bkd", assign, x)
        mass = ops.expand_dims(ops.sum(assign, axis=1), -1)  # [B, K, 1]
        vlad = weighted_sum - mass * ops.expand_dims(self.centers, 0)
        vlad = _l2_normalize(vlad, axis=-1)
        return _l2_normalize(ops.reshape(vlad, (-1, self.num_clusters * x.shape[-1])), axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_clusters * input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "num_clusters": self.num_clusters}


def _l2_normalize(x, axis):
    return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=True), 1e-12))


def build_actionvlad(input_shape=(25, 224, 224, 3), num_classes: int = 101, *,
                     num_clusters: int = 64, descriptor_dim: int | None = None,
                     backbone="small_cnn", backbone_weights=None, backbone_trainable: bool = True,
                     small_cnn_widths=(16, 32, 64, 128), input_normalization: str = "imagenet",
                     dropout: float = 0.5, name: str = "actionvlad") -> keras.Model:
    """ActionVLAD (Girdhar et al. 2017): one VLAD over all frames' conv descriptors.

    Args:
        input_shape: ``(T, H, W, 3)``; the paper samples 25 frames (VGG-16 conv5_3 features).
        num_classes: number of classes.
        num_clusters: K, VLAD anchors (64 in the paper).
        descriptor_dim: reduce the descriptors with a 1x1 conv first (None keeps D).
        backbone, backbone_weights, backbone_trainable, small_cnn_widths, input_normalization:
            see :func:`kvid.models.backbones.build_backbone`; must give a spatial feature map.
        dropout: before the logits layer.
    """
    input_shape = check_input_shape(input_shape, channels=3)
    check_positive_int(num_classes, "num_classes")
    check_positive_int(num_clusters, "num_clusters")
    if descriptor_dim is not None:
        check_positive_int(descriptor_dim, "descriptor_dim")
    check_rate(dropout)
    inputs = video_input(input_shape, "rgb")
    net = build_backbone(backbone, input_shape[1:], weights=backbone_weights,
                         input_normalization=input_normalization, trainable=backbone_trainable,
                         small_cnn_widths=small_cnn_widths, name="backbone")
    x = frame_feature_maps(net, inputs, model="ActionVLAD")
    if descriptor_dim:
        x = conv_bn_act(x, descriptor_dim, 1, name="descriptor_reduce")
    x = layers.Reshape((-1, x.shape[-1]), name="descriptors")(x)
    x = NetVLAD(num_clusters, name="vlad")(x)
    logits = classifier_head(x, num_classes, dropout=dropout)
    return keras.Model(inputs, logits, name=name)
