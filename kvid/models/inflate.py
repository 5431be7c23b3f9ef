"""ImageNet 2D weights into a 3D network (I3D's inflation, Carreira & Zisserman 2017, 2.2).

A ``kh x kw`` kernel becomes ``t x kh x kw``: repeated ``t`` times over time and divided by
``t``, so a clip of one repeated frame gives the 2D network's activations. Layers are
paired by their place in the graph, not by name or list position: each conv gets the key
(convs on the longest path from the input before it, spatial kernel, input and output
channels), BatchNorms and biases follow the conv that feeds them. That key tells a ResNet
block's projection shortcut (one conv from the block input) from its last 1x1 conv (three)
even where both map 64 -> 256 channels and the two libraries create them in another order.
"""

from __future__ import annotations

from collections import defaultdict

import keras
import numpy as np

_CONVS = (keras.layers.Conv2D, keras.layers.Conv3D)


def _parents(layer) -> list:
    nodes = getattr(layer, "_inbound_nodes", [])
    return [p.operation for p in nodes[0].parent_nodes] if nodes else []


def _graph(model: keras.Model):
    """Per layer: conv depth, and the conv whose output it normalizes (for BN / Dense)."""
    depth, feeder = {}, {}
    for layer in model.layers:
        parents = [p for p in _parents(layer) if p.name in depth]
        d = max((depth[p.name] for p in parents), default=0)
        if isinstance(layer, _CONVS):
            depth[layer.name], feeder[layer.name] = d + 1, layer
        else:
            depth[layer.name] = d
            feeder[layer.name] = feeder.get(parents[0].name) if len(parents) == 1 else None
    return depth, feeder


def _conv_key(layer, depth) -> tuple:
    kernel = tuple(layer.kernel.shape)
    return ("conv", depth[layer.name], kernel[-4:-2] if len(kernel) == 5 else kernel[:2],
            kernel[-2], kernel[-1], getattr(layer, "groups", 1))


def _keyed(model: keras.Model, skip: set[str]) -> dict[tuple, list]:
    """{structural key: [layers in graph order]} of the weighted layers of ``model``."""
    depth, feeder = _graph(model)
    keyed = defaultdict(list)
    for layer in model.layers:
        if not layer.weights or layer.name in skip:
            continue
        if isinstance(layer, _CONVS):
            keyed[_conv_key(layer, depth)].append(layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            conv = feeder.get(layer.name)
            key = _conv_key(conv, depth) if conv is not None else ("free", depth[layer.name])
            keyed[("bn",) + key].append(layer)
        elif isinstance(layer, keras.layers.Dense):
            keyed[("dense", depth[layer.name], *layer.kernel.shape)].append(layer)
        else:
            raise ValueError(f"cannot inflate layer {layer.name!r} ({type(layer).__name__})")
    return keyed


def inflate_2d_weights(model_2d: keras.Model, model_3d: keras.Model, *,
                       skip: tuple[str, ...] = ()) -> int:
    """Copies a 2D model's weights (e.g. ``keras.applications.ResNet50(weights=PATH)``)
    into the 3D model with the same structure, inflating every conv kernel over time.

    A 2D conv's bias, where the 3D conv has none, is folded into the BatchNorm after it
    (its moving mean minus the bias), which computes the same. ``skip`` names layers of
    ``model_3d`` left as they are (a head for other classes).

    Returns:
        The number of 3D layers set.

    Raises:
        ValueError: the networks differ in structure (naming the first unmatched key),
            or a kernel cannot be inflated.
    """
    source, target = _keyed(model_2d, set()), _keyed(model_3d, set(skip))
    unmatched = [k for k in target if len(source.get(k, ())) != len(target[k])]
    unmatched += [k for k in source if k[0] != "dense" and k not in target]  # heads may differ
    if unmatched:
        key = unmatched[0]
        first = (target.get(key) or source[key])[0].name
        raise ValueError(
            f"{model_2d.name} and {model_3d.name} differ in structure: {len(source.get(key, ()))}"
            f" vs {len(target.get(key, ()))} layers with key {key} ({len(unmatched)} keys "
            f"differ; first layer: {first})")
    folded: dict[str, np.ndarray] = {}  # conv name -> its 2D bias, for the BN after it
    count = 0
    for key, layers_3d in target.items():
        for src, dst in zip(source[key], layers_3d):
            if key[0] == "conv":
                weights = src.get_weights()
                kernel = weights[0]
                t = dst.kernel.shape[0]
                new = [np.repeat(kernel[None], t, axis=0) / t]
                if dst.use_bias:
                    new.append(weights[1] if len(weights) > 1 else np.zeros(dst.filters, "float32"))
                elif len(weights) > 1:
                    folded[dst.name] = weights[1]
                dst.set_weights(new)
            count += 1
    _, feeder = _graph(model_3d)
    for key, layers_3d in target.items():
        if key[0] == "conv":
            continue
        for src, dst in zip(source[key], layers_3d):
            weights = [np.asarray(w) for w in src.get_weights()]
            conv = feeder.get(dst.name)
            if key[0] == "bn" and conv is not None and conv.name in folded:
                mean = 2 if dst.scale and dst.center else 1 if (dst.scale or dst.center) else 0
                weights[mean] = weights[mean] - folded[conv.name]
            dst.set_weights(weights)
    return count


def application_2d(name: str, weights: str, input_shape=(224, 224, 3)) -> keras.Model:
    """``keras.applications.<name>`` with the weight file the user has (with or without the
    top), to inflate from; nothing is downloaded."""
    app = getattr(keras.applications, name, None)
    if not callable(app):
        raise ValueError(f"Unknown keras.applications model. Received: name={name!r}")
    try:
        return app(weights=weights, include_top=False, input_shape=input_shape)
    except ValueError:  # a file with the classifier: its layers must be there to load it
        return app(weights=weights, include_top=True)
