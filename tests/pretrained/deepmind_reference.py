"""DeepMind's kinetics-i3d ``i3d.py`` (``InceptionI3d``, ``Unit3D``) in raw ``tf.nn`` ops.

The parity reference for :mod:`kvid.pretrained.deepmind_i3d`: Sonnet is not installed
here, so this is the graph DeepMind's code builds, written from their i3d.py and Sonnet
1.x (``snt.Conv3D`` with ``padding=SAME``: ``tf.nn.conv3d`` and ``tf.nn.bias_add``;
``snt.BatchNorm()`` defaults at ``is_training=False, test_local_stats=False``:
``tf.nn.batch_normalization`` of the moving statistics, offset ``beta``, no scale, eps
1e-3), independent of kvid's layer table. Variables are looked up by DeepMind's
checkpoint names, or created at random on first use as TF1's ``tf.get_variable`` creates
them while the graph is built; :func:`save_checkpoint` writes them as a TF checkpoint with
exactly those names.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

BN_EPSILON = 1e-3  # snt.BatchNorm's default

# InceptionI3d's Mixed blocks as i3d.py spells them: per branch, its Unit3Ds as
# (name, output channels, kernel); Branch_3 starts with MaxPool3d_0a_3x3 (3x3x3, stride 1).
_ONE, _THREE = (1, 1, 1), (3, 3, 3)


def _mixed(b0, b1a, b1b, b2a, b2b, b3, b2b_name="Conv3d_0b_3x3"):
    return (("Branch_0", (("Conv3d_0a_1x1", b0, _ONE),)),
            ("Branch_1", (("Conv3d_0a_1x1", b1a, _ONE), ("Conv3d_0b_3x3", b1b, _THREE))),
            ("Branch_2", (("Conv3d_0a_1x1", b2a, _ONE), (b2b_name, b2b, _THREE))),
            ("Branch_3", (("Conv3d_0b_1x1", b3, _ONE),)))


# (endpoint, kind, arguments) in i3d.py's order.
ENDPOINTS = (
    ("Conv3d_1a_7x7", "unit", (64, (7, 7, 7), (2, 2, 2))),
    ("MaxPool3d_2a_3x3", "pool", ((1, 3, 3), (1, 2, 2))),
    ("Conv3d_2b_1x1", "unit", (64, _ONE, _ONE)),
    ("Conv3d_2c_3x3", "unit", (192, _THREE, _ONE)),
    ("MaxPool3d_3a_3x3", "pool", ((1, 3, 3), (1, 2, 2))),
    ("Mixed_3b", "mixed", _mixed(64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", "mixed", _mixed(128, 128, 192, 32, 96, 64)),
    ("MaxPool3d_4a_3x3", "pool", (_THREE, (2, 2, 2))),
    ("Mixed_4b", "mixed", _mixed(192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", "mixed", _mixed(160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", "mixed", _mixed(128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", "mixed", _mixed(112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", "mixed", _mixed(256, 160, 320, 32, 128, 128)),
    ("MaxPool3d_5a_2x2", "pool", ((2, 2, 2), (2, 2, 2))),
    # i3d.py names Mixed_5b's Branch_2 3x3x3 unit Conv3d_0a_3x3 (the checkpoints do too).
    ("Mixed_5b", "mixed", _mixed(256, 160, 320, 32, 128, 128, b2b_name="Conv3d_0a_3x3")),
    ("Mixed_5c", "mixed", _mixed(384, 192, 384, 48, 128, 128)),
)


class Variables:
    """DeepMind-named variables: stored arrays, or (``create=True``) random ones made on
    first use and recorded in :attr:`values`.

    ``stats_shape="flat"`` makes BN statistics ``[C]`` (the Kinetics-400 checkpoints),
    ``"5d"`` makes them ``[1, 1, 1, 1, C]`` (rgb_scratch_kin600's newer Sonnet). Random
    values: He-normal kernels, moving means N(0, 0.1), variances U(0.5, 1.5), beta and
    biases N(0, 0.1), so a BN wired to the wrong statistic changes the logits.
    """

    def __init__(self, values=None, *, create: bool = False, seed: int = 0,
                 stats_shape: str = "flat"):
        self.values = dict(values or {})
        self.create = create
        self.stats_shape = stats_shape
        self._rng = np.random.default_rng(seed)

    def __call__(self, name: str, shape, kind: str) -> tf.Tensor:
        if name not in self.values:
            if not self.create:
                raise KeyError(f"no variable {name}")
            self.values[name] = self._random(tuple(shape), kind)
        value = self.values[name]
        if value.size != int(np.prod(shape)) or value.shape[-1] != shape[-1]:
            raise ValueError(f"{name}: stored shape {value.shape}, graph needs {tuple(shape)}")
        return tf.constant(value)

    def _random(self, shape, kind):
        rng = self._rng
        if kind in ("moving_mean", "moving_variance", "beta") and self.stats_shape == "5d":
            shape = (1, 1, 1, 1, *shape)
        if kind == "w":
            value = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[:-1]))
        elif kind == "moving_variance":
            value = rng.uniform(0.5, 1.5, shape)
        else:  # b, beta, moving_mean
            value = rng.standard_normal(shape) * 0.1
        return value.astype(np.float32)


def unit3d(net, get, scope, output_channels, kernel_shape=_ONE, stride=_ONE,
           activation_fn=tf.nn.relu, use_batch_norm=True, use_bias=False):
    """i3d.py's ``Unit3D``: snt.Conv3D (SAME) -> snt.BatchNorm -> activation."""
    w = get(f"{scope}/conv_3d/w", (*kernel_shape, net.shape[-1], output_channels), "w")
    net = tf.nn.conv3d(net, w, strides=[1, *stride, 1], padding="SAME")
    if use_bias:
        net = tf.nn.bias_add(net, get(f"{scope}/conv_3d/b", (output_channels,), "b"))
    if use_batch_norm:
        stats = (output_channels,)
        mean = get(f"{scope}/batch_norm/moving_mean", stats, "moving_mean")
        variance = get(f"{scope}/batch_norm/moving_variance", stats, "moving_variance")
        beta = get(f"{scope}/batch_norm/beta", stats, "beta")
        net = tf.nn.batch_normalization(net, mean, variance, offset=beta, scale=None,
                                        variance_epsilon=BN_EPSILON)
    if activation_fn is not None:
        net = activation_fn(net)
    return net


def inception_i3d(inputs, get, num_classes: int = 400, scope: str = "RGB/inception_i3d/"):
    """``InceptionI3d(num_classes, spatial_squeeze=True)(inputs, is_training=False,
    dropout_keep_prob=1.0)``: the averaged logits and every endpoint's output."""
    net = tf.convert_to_tensor(inputs, tf.float32)
    end_points = {}
    for end_point, kind, args in ENDPOINTS:
        if kind == "unit":
            channels, kernel, stride = args
            net = unit3d(net, get, f"{scope}{end_point}", channels, kernel, stride)
        elif kind == "pool":
            kernel, stride = args
            net = tf.nn.max_pool3d(net, ksize=[1, *kernel, 1], strides=[1, *stride, 1],
                                   padding="SAME")
        else:
            branches = []
            for branch, layers in args:
                x = net
                if branch == "Branch_3":
                    x = tf.nn.max_pool3d(x, ksize=[1, 3, 3, 3, 1], strides=[1, 1, 1, 1, 1],
                                         padding="SAME")
                for name, channels, kernel in layers:
                    x = unit3d(x, get, f"{scope}{end_point}/{branch}/{name}", channels, kernel)
                branches.append(x)
            net = tf.concat(branches, 4)
        end_points[end_point] = net
    net = tf.nn.avg_pool3d(net, ksize=[1, 2, 7, 7, 1], strides=[1, 1, 1, 1, 1],
                           padding="VALID")
    logits = unit3d(net, get, f"{scope}Logits/Conv3d_0c_1x1", num_classes,
                    activation_fn=None, use_batch_norm=False, use_bias=True)
    logits = tf.squeeze(logits, [2, 3], name="SpatialSqueeze")
    averaged_logits = tf.reduce_mean(logits, axis=1)
    end_points["Logits"] = averaged_logits
    return averaged_logits, end_points


def save_checkpoint(values: dict, folder: str, *, momentum: bool = False) -> str:
    """Writes ``values`` as DeepMind ships them: ``folder/model.ckpt.{index,data-*}`` and
    the ``checkpoint`` state file; ``momentum`` adds a ``<name>/Momentum`` slot per
    trainable variable (w, b, beta) as rgb_scratch_kin600 has. Returns the prefix."""
    tensors = dict(values)
    if momentum:
        tensors.update({f"{name}/Momentum": np.zeros_like(value)
                        for name, value in values.items()
                        if name.rpartition("/")[2] in ("w", "b", "beta")})
    os.makedirs(folder, exist_ok=True)
    prefix = os.path.join(folder, "model.ckpt")
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(tensors[n]) for n in names])
    with open(os.path.join(folder, "checkpoint"), "w", encoding="utf-8") as f:
        f.write('model_checkpoint_path: "model.ckpt"\nall_model_checkpoint_paths: "model.ckpt"\n')
    return prefix


def save_saved_model(values: dict, folder: str, *, channels: int, num_classes: int,
                     scope: str, outer_scope: str = "") -> None:
    """DeepMind's graph with ``values`` as TF1 variables, written as a SavedModel (the
    layout of a TF1 Hub module: ``saved_model.pb`` + ``variables/``) whose ``serving_default``
    maps ``input`` clips to the logits; ``outer_scope`` prefixes every variable (a graph that
    imported the module under ``module/``)."""
    graph = tf.Graph()
    with graph.as_default():
        created = {}

        def get(name, shape, kind):
            if name not in created:
                created[name] = tf.compat.v1.get_variable(outer_scope + name,
                                                          initializer=values[name])
            return created[name]

        inputs = tf.compat.v1.placeholder(tf.float32, [None, None, None, None, channels],
                                          name="input")
        logits, _ = inception_i3d(inputs, get, num_classes, scope)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            builder = tf.compat.v1.saved_model.Builder(folder)
            signature = tf.compat.v1.saved_model.predict_signature_def(
                {"input": inputs}, {"logits": logits})
            builder.add_meta_graph_and_variables(
                sess, ["serve"], signature_def_map={"serving_default": signature})
            builder.save()


def run_saved_model(folder: str, clip: np.ndarray) -> np.ndarray:
    """The SavedModel's own ``serving_default`` logits on ``clip`` (in a TF1 session)."""
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as sess:
        meta = tf.compat.v1.saved_model.load(sess, ["serve"], folder)
        signature = meta.signature_def["serving_default"]
        return sess.run(signature.outputs["logits"].name,
                        {signature.inputs["input"].name: clip})
