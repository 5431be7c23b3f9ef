"""PyTorchVideo's Kinetics-400 3D ResNets (``slow_r50``, ``c2d_r50``, ``i3d_r50``,
``csn_r101``) into :func:`kvid.models.resnet3d.build_resnet3d`.

PyTorchVideo names (``pytorchvideo.models.resnet``): the model is ``Net(blocks=[...])``:
``blocks.0`` the stem (``conv``, ``norm``), then one ``ResStage`` per stage (C2D and I3D
put their 2x1x1 max pool between the first two, shifting the later indices by one), then
the head, ``ResNetBasicHead`` with the Linear ``proj``. A stage's ``res_blocks.{i}`` has
``branch1_conv``/``branch1_norm`` (the projection shortcut) and ``branch2.conv_{a,b,c}`` /
``branch2.norm_{a,b,c}``. Hub checkpoints nest the state dict under ``"model_state"``
(``pytorchvideo.models.hub``: ``checkpoint["model_state"]``).
"""

from __future__ import annotations

from kvid.models.resnet3d import VARIANTS
from kvid.pretrained.checkpoint import channels_first, weighted_layers

# pytorchvideo docs/source/model_zoo.md, Kinetics-400 table: top-1 (%), GFLOPs of one view.
_ZOO = {"slow_r50": (74.58, 54.52, "SLOW_8x8_R50.pyth", "8x8"),
        "c2d_r50": (71.46, 25.89, "C2D_8x8_R50.pyth", "8x8"),
        "i3d_r50": (73.27, 37.53, "I3D_8x8_R50.pyth", "8x8"),
        "csn_r101": (77.00, 75.62, "CSN_32x2_R101.pyth", "32x2")}


def res_block_pairs(keras_name: str, ptv_prefix: str) -> list[tuple[str, str]]:
    """One PyTorchVideo ``ResBlock`` (bottleneck ``branch2``, projection ``branch1``) as
    named by :func:`kvid.models.resnet3d.bottleneck_block`."""
    out = [(f"{keras_name}_proj_conv", f"{ptv_prefix}.branch1_conv"),
           (f"{keras_name}_proj_bn", f"{ptv_prefix}.branch1_norm")]
    for part in "abc":
        out += [(f"{keras_name}_{part}_conv", f"{ptv_prefix}.branch2.conv_{part}"),
                (f"{keras_name}_{part}_bn", f"{ptv_prefix}.branch2.norm_{part}")]
    return out


def stage_indices(stage1_pool: bool) -> tuple[tuple[int, ...], int]:
    """``Net.blocks`` indices of the four stages and of the head."""
    stages = (1, 3, 4, 5) if stage1_pool else (1, 2, 3, 4)
    return stages, stages[-1] + 1


def pairs(model, name: str) -> list[tuple[str, str]]:
    """Keras layer -> PyTorchVideo state-dict prefix, for every weighted layer."""
    variant = VARIANTS[name]
    stages, head = stage_indices(variant.get("stage1_pool", False))
    out = [("stem_conv", "blocks.0.conv"), ("stem_bn", "blocks.0.norm")]
    for stage, (index, depth) in enumerate(zip(stages, variant["blocks"])):
        for block in range(depth):
            out += res_block_pairs(f"res{stage + 2}_{block}", f"blocks.{index}.res_blocks.{block}")
    out.append(("logits", f"blocks.{head}.proj"))
    present = {layer.name for layer in weighted_layers(model)}
    return [(k, t) for k, t in out if k in present]  # blocks without a projection


def calibrate_batch_norm(module, forward):
    """Sets every BatchNorm's running statistics to those of the activations ``forward()``
    feeds it (affine parameters left as they are), then puts the module in eval mode.

    With random statistics an eval-mode BN does not normalize, so a deep residual net's
    activations grow by ~1.6x a block (randomized Slow R50: logits ~700, CSN-101 far more)
    and float32 rounding alone exceeds a 1e-4 parity bound. Calibrated, the net is scaled
    as a trained one is, while its per-channel statistics and affines still differ, so a BN
    paired with the wrong tensors still shows.
    """
    import torch

    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in norms]
    module.eval()
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: after one batch, exactly its statistics
        bn.train()
    try:
        with torch.no_grad():
            forward()
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
        module.eval()
    return module


def calibrated_reference(importer, seed: int = 0, clip_shape=(8, 96, 96, 3),
                         final_bn_scale: float = 0.25):
    """The randomized reference of :func:`kvid.pretrained.parity.randomized_reference`, scaled
    as a trained network is: each residual branch's last BN (``norm_c``) affine times
    ``final_bn_scale`` (PySlowFast's Kinetics configs zero-initialize it,
    ``RESNET.ZERO_INIT_FINAL_BN: True``), then every BN's statistics calibrated on a random
    clip through the trunk (``Net.blocks`` without the head, whose fixed pool needs the
    full clip size). Randomized only, CSN-101's 33 blocks give logits over 100."""
    import torch

    from kvid.pretrained import random_clip
    from kvid.pretrained.parity import randomized_reference

    module = randomized_reference(importer, seed)
    with torch.no_grad():
        for name, sub in module.named_modules():
            if name.endswith(".norm_c"):
                sub.weight.mul_(final_bn_scale)
                sub.bias.mul_(final_bn_scale)
    clip = importer.reference_inputs(random_clip(clip_shape, seed=seed + 2, batch=2))

    def trunk():
        x = clip
        for block in module.blocks[:-1]:
            x = block(x)

    return calibrate_batch_norm(module, trunk)


def _importer(name: str):
    from kvid.pretrained import Importer

    top1, gflops, checkpoint, recipe = _ZOO[name]
    _, head = stage_indices(VARIANTS[name].get("stage1_pool", False))

    def reference():
        from pytorchvideo.models import hub

        return getattr(hub, name)(pretrained=False).eval()

    return Importer(
        source="pytorchvideo", name=name, pairs=lambda model: pairs(model, name),
        head_prefixes=(f"blocks.{head}.proj",),
        top1=top1, top1_source=f"pytorchvideo docs/source/model_zoo.md, Kinetics-400 {recipe} "
        f"(3 crops x 10 clips; {gflops} GFLOPs a view)",
        reference=reference, reference_inputs=channels_first, checkpoint_name=checkpoint,
        wrapper="model_state")


IMPORTERS = [_importer(name) for name in VARIANTS]
