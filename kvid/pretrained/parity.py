"""Proof that a converted network computes its reference's function (tests, benchmarks).

The reference is built in its own library with random weights (BatchNorm statistics and
affine parameters randomized too, so a BN wired to the wrong tensor shows), saved the way
its publisher saves it, read back by :func:`kvid.pretrained.load_pretrained`, and both
run in float32 on the same random clip. Needs the conversion extra (torch).
"""

from __future__ import annotations

import os
import time

import numpy as np

from kvid.pretrained import Importer, load_pretrained, random_clip


def randomized_reference(importer: Importer, seed: int = 0):
    """The reference module in eval mode with every parameter and BN statistic random."""
    import torch

    torch.manual_seed(seed)
    module = importer.reference()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, torch.nn.modules.batchnorm._BatchNorm):
                n = sub.num_features
                sub.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                sub.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                if sub.affine:
                    sub.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                    sub.bias.copy_(torch.randn(n, generator=generator) * 0.1)
            elif isinstance(sub, torch.nn.LayerNorm) and sub.elementwise_affine:
                sub.weight.copy_(torch.rand(sub.weight.shape, generator=generator) + 0.5)
                sub.bias.copy_(torch.randn(sub.bias.shape, generator=generator) * 0.1)
    return module.eval()


def save_reference(importer: Importer, module, path: str) -> str:
    """``torch.save`` of the state dict, nested under ``importer.wrapper`` if the publisher does."""
    import torch

    state = module.state_dict()
    torch.save({importer.wrapper: state} if importer.wrapper else state, path)
    return path


def reference_logits(importer: Importer, module, clip: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return module(importer.reference_inputs(clip)).float().numpy()


def check_parity(importer: Importer, input_shape, folder: str, *, seed: int = 0,
                 module=None) -> dict:
    """Converts a randomized reference saved in ``folder`` and compares logits on one clip.

    Returns ``max_abs_diff``, ``max_abs_logit``, the input shape and conversion seconds.
    """
    module = module if module is not None else randomized_reference(importer, seed)
    path = save_reference(importer, module, os.path.join(
        folder, importer.checkpoint_name or f"{importer.name}.pth"))
    start = time.perf_counter()
    model = load_pretrained(importer.spec, path, input_shape=tuple(input_shape))
    convert_s = time.perf_counter() - start
    clip = random_clip(input_shape, seed=seed)
    expected = reference_logits(importer, module, clip)
    got = np.asarray(model(clip, training=False))
    return {"model": importer.spec, "input_shape": list(input_shape),
            "max_abs_diff": float(np.max(np.abs(got - expected))),
            "max_abs_logit": float(np.max(np.abs(expected))), "convert_s": round(convert_s, 2),
            "keras_model": model, "reference": module}
