"""Optimizers that train a pretrained backbone at a fraction of the head's learning rate.

Fine-tuning recipes (TSN, I3D, SlowFast's) train the new head at the base rate and the
Kinetics backbone slower; Keras 3 has one learning rate per optimizer. These subclasses of
the stock SGD/Adam/AdamW multiply the rate of every variable outside ``head_variables``
(variable paths) by ``backbone_lr_scale`` inside ``update_step``, so moments, schedules and
checkpoints stay the stock optimizer's; decoupled weight decay of those variables is scaled
the same way, as PyTorch's per-group ``lr`` does. They serialize with the model
(``kvid>BackboneLRAdam`` ...), so ``best.keras`` loads with its optimizer.
"""
from __future__ import annotations

import keras


class _BackboneLR:
    def __init__(self, *args, backbone_lr_scale: float = 1.0, head_variables=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.backbone_lr_scale = float(backbone_lr_scale)
        self.head_variables = tuple(head_variables)

    def build(self, variables):
        super().build(variables)
        head = set(self.head_variables)
        missing = head - {v.path for v in variables}
        if missing:
            raise ValueError(f"head variables {sorted(missing)[:3]} are not among the "
                             "variables this optimizer trains")
        self._lr_scales = [1.0 if v.path in head else self.backbone_lr_scale for v in variables]

    def _scale(self, variable) -> float:
        return self._lr_scales[self._get_variable_index(variable)]

    def _use_weight_decay(self, variable):
        # a backbone variable's decay happens in update_step, at its own rate
        return self._scale(variable) == 1.0 and super()._use_weight_decay(variable)

    def update_step(self, gradient, variable, learning_rate):
        scale = self._scale(variable)
        if scale != 1.0:
            learning_rate = keras.ops.cast(learning_rate, variable.dtype) * scale
            if self.weight_decay is not None and super()._use_weight_decay(variable):
                wd = keras.ops.cast(self.weight_decay, variable.dtype)
                variable.assign(variable - variable * wd * learning_rate)
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "backbone_lr_scale": self.backbone_lr_scale,
                "head_variables": list(self.head_variables)}


@keras.saving.register_keras_serializable(package="kvid")
class BackboneLRSGD(_BackboneLR, keras.optimizers.SGD):
    pass


@keras.saving.register_keras_serializable(package="kvid")
class BackboneLRAdam(_BackboneLR, keras.optimizers.Adam):
    pass


@keras.saving.register_keras_serializable(package="kvid")
class BackboneLRAdamW(_BackboneLR, keras.optimizers.AdamW):
    pass


BACKBONE_LR = {"sgd": BackboneLRSGD, "adam": BackboneLRAdam, "adamw": BackboneLRAdamW}


def head_variable_paths(model: keras.Model, head: tuple[str, ...]) -> list[str]:
    """The paths of the head layers' trainable variables (what trains at the base rate)."""
    names = {layer.name for layer in model.layers}
    if not set(head) & names:
        raise ValueError(f"model {model.name!r} has none of the head layers {list(head)}")
    return [v.path for layer in model.layers if layer.name in head
            for v in layer.trainable_variables]
