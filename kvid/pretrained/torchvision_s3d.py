"""torchvision's Kinetics-400 S3D (``s3d``) into :func:`kvid.models.s3d.build_s3d`.

torchvision names (``torchvision.models.video.s3d``): ``features.<i>`` is the i-th entry of
the I3D layer table (:data:`kvid.models.i3d.INCEPTION_V1`, same order); a
``Conv3dNormActivation`` is ``Sequential(conv, BN, ReLU)``, a ``TemporalSeparableConv``
two of them (spatial ``.0``, temporal ``.1``); an inception block has ``branch0`` (unit),
``branch1``/``branch2`` (``.0`` unit, ``.1`` separable conv) and ``branch3`` (``.0`` max
pool, ``.1`` unit). The head is ``classifier = Sequential(Dropout, Conv3d 1x1x1)``.
"""

from __future__ import annotations

from kvid.models.i3d import INCEPTION_V1
from kvid.pretrained.checkpoint import channels_first, torchvision_video

TOP1 = 68.368
CHECKPOINT = "s3d-d76dad2f.pth"
CLASSIFIER = "classifier.1"


def _unit(keras_name: str, prefix: str) -> list[tuple[str, str]]:
    return [(f"{keras_name}_conv", f"{prefix}.0"), (f"{keras_name}_bn", f"{prefix}.1")]


def _sep(keras_name: str, prefix: str) -> list[tuple[str, str]]:
    return _unit(f"{keras_name}_s", f"{prefix}.0") + _unit(f"{keras_name}_t", f"{prefix}.1")


def pairs(model=None) -> list[tuple[str, str]]:
    """Keras layer -> torchvision state-dict prefix, for every weighted layer."""
    out = []
    for i, (kind, name, *spec) in enumerate(INCEPTION_V1):
        t = f"features.{i}"
        if kind == "conv":
            out += _unit(name, t) if spec[1][0] == 1 else _sep(name, t)
        elif kind == "mixed":
            out += _unit(f"{name}_b0", f"{t}.branch0")
            for b in (1, 2):
                out += _unit(f"{name}_b{b}a", f"{t}.branch{b}.0")
                out += _sep(f"{name}_b{b}b", f"{t}.branch{b}.1")
            out += _unit(f"{name}_b3b", f"{t}.branch3.1")
    out.append(("logits", CLASSIFIER))
    return out


def squeeze_classifier(state: dict) -> dict:
    """The 1x1x1 classifier conv's [N, 1024, 1, 1, 1] kernel as the Dense layer's [N, 1024]."""
    key = f"{CLASSIFIER}.weight"
    if key in state and state[key].ndim == 5 and state[key].shape[2:] == (1, 1, 1):
        state = {**state, key: state[key].reshape(state[key].shape[:2])}
    return state


def _importer():
    from kvid.pretrained import Importer

    return Importer(
        source="torchvision", name="s3d", pairs=pairs, head=("logits",),
        head_prefixes=("classifier",), top1=TOP1,
        top1_source="torchvision s3d KINETICS400_V1 meta acc@1 (clip level: 1 clip of 128 "
                    "frames at 15 fps)",
        reference=torchvision_video("s3d"), reference_inputs=channels_first,
        checkpoint_name=CHECKPOINT,
        convert_state=squeeze_classifier)


IMPORTERS = [_importer()]
