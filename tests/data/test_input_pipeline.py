import numpy as np
import pytest
import tensorflow as tf

from kvid.data import AugmentConfig, load_dataset_info, make_dataset, resolve_files

from data_fixtures import frame_ids, make_clip, write_shards


def test_training_batches_shapes_and_labels(shard_dir):
    ds = make_dataset(shard_dir, "train", clip_frames=4, batch_size=2, training=True,
                      image_size=16, seed=1)
    batches = list(ds)
    assert len(batches) == int(ds.cardinality()) == 3  # 6 clips, drop_remainder in training
    x, y = batches[0]
    assert x.shape == (2, 4, 16, 16, 3) and x.dtype == tf.float32
    assert y.shape == (2,) and y.dtype == tf.int32
    assert 0.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 1.0
    labels = sorted(int(v) for _, y in batches for v in y)
    assert labels == [0, 0, 1, 1, 2, 2]


def test_eval_is_centred_center_crop_in_file_order(shard_dir):
    ds = make_dataset(shard_dir, "test", clip_frames=4, batch_size=2, training=False,
                      image_size=(24, 24), normalize="unit")
    batches = list(ds)
    assert [b[0].shape[0] for b in batches] == [2, 1]  # eval keeps the partial batch
    assert int(ds.cardinality()) == 2  # from dataset.json, so Keras knows the epoch length
    clip = batches[0][0][0].numpy()
    assert frame_ids(clip) == [4, 5, 6, 7]  # 12 stored frames: centred window
    red = clip[0, ..., 0].mean(axis=0) * 255
    # Center 24 columns of a 32-wide ramp: from 4/31*255 to 27/31*255.
    np.testing.assert_allclose(red[[0, -1]], [4 / 31 * 255, 27 / 31 * 255], atol=4)
    assert [int(v) for v in batches[0][1]] + [int(batches[1][1][0])] == [0, 1, 2]


@pytest.mark.parametrize("modality,shapes", [
    ("flow", (2, 4, 16, 16, 2)),
    ("rgb+flow", {"rgb": (2, 4, 16, 16, 3), "flow": (2, 4, 16, 16, 2)}),
])
def test_modalities_shapes_and_dtypes(shard_dir, modality, shapes):
    ds = make_dataset(shard_dir, "train", clip_frames=4, batch_size=2, training=True,
                      image_size=16, modality=modality, seed=0)
    x, _ = next(iter(ds))
    got = {k: tuple(v.shape) for k, v in x.items()} if isinstance(x, dict) else tuple(x.shape)
    assert got == shapes
    for v in (x.values() if isinstance(x, dict) else [x]):
        assert v.dtype == tf.float32
    spec = ds.element_spec[0]  # static shapes, so Keras can build the model from them
    assert ({k: tuple(v.shape) for k, v in spec.items()} if isinstance(spec, dict)
            else tuple(spec.shape)) == shapes


def test_input_names_and_one_hot_labels_from_dataset_json(shard_dir):
    ds = make_dataset(shard_dir, "test", clip_frames=4, batch_size=3, training=False,
                      image_size=16, modality="rgb+flow", label_mode="one_hot",
                      input_names={"rgb": "video", "flow": "motion"})
    x, y = next(iter(ds))
    assert sorted(x) == ["motion", "video"]
    np.testing.assert_array_equal(y, np.eye(3, dtype=np.float32))  # 3 labels in dataset.json


def test_same_seed_same_batches_other_seed_differs(shard_dir):
    def run(seed):
        ds = make_dataset(shard_dir, "train", clip_frames=4, batch_size=3, training=True,
                          image_size=16, seed=seed, repeat=True,
                          augment=AugmentConfig(color_jitter=0.2, mixup_alpha=0.4),
                          label_mode="one_hot")
        return [(x.numpy(), y.numpy()) for x, y in ds.take(4)]

    a, b, c = run(5), run(5), run(6)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert any(not np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))
    # Epochs differ: the second pass over the 6 clips is not the first one again.
    assert not np.array_equal(a[0][0], a[2][0])


def test_tfx_artifact_gzip_and_file_patterns(tmp_path):
    clips = [make_clip(k, f"v{k}") for k in range(3)]
    uri = tmp_path / "examples"
    files = write_shards(str(tmp_path / "kvid"), "eval", clips, shards=1, gzip=True)
    (uri / "Split-eval").mkdir(parents=True)
    tfx_file = uri / "Split-eval" / "data_tfrecord-00000-of-00001.gz"
    tfx_file.write_bytes(open(files[0], "rb").read())
    kw = dict(clip_frames=4, batch_size=8, training=False, image_size=16)
    for source in (str(uri), [str(uri / "Split-eval" / "*.gz")], str(tmp_path / "kvid")):
        (x, y), = list(make_dataset(source, "eval", **kw))
        assert x.shape[0] == 3 and sorted(y.numpy().tolist()) == [0, 1, 2]
    assert resolve_files(str(uri), "eval") == ([str(tfx_file)], "GZIP")


def test_missing_split_and_bad_arguments_raise_clearly(shard_dir):
    kw = dict(clip_frames=4, batch_size=2, training=True, image_size=16)
    with pytest.raises(FileNotFoundError, match=r"Splits found there: \['test', 'train'\]"):
        make_dataset(shard_dir, "validation", **kw)
    with pytest.raises(ValueError, match="modality must be one of"):
        make_dataset(shard_dir, "train", modality="depth", **kw)
    with pytest.raises(ValueError, match="need label_mode='one_hot'"):
        make_dataset(shard_dir, "train", augment=AugmentConfig(cutmix_alpha=1.0), **kw)
    with pytest.raises(ValueError, match="normalize must be one of"):
        make_dataset(shard_dir, "train", normalize="caffe", **kw)
    with pytest.raises(ValueError, match="batch_size"):
        make_dataset(shard_dir, "train", **{**kw, "batch_size": 0})
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        load_dataset_info(str(shard_dir) + "/train")
    assert load_dataset_info(shard_dir)["labels"] == ["class0", "class1", "class2"]


@pytest.mark.parametrize("mode,lo,hi", [("symmetric", -1.0, 1.0), ("imagenet", -2.2, 2.7)])
def test_normalize_modes(shard_dir, mode, lo, hi):
    ds = make_dataset(shard_dir, "test", clip_frames=2, batch_size=3, training=False,
                      image_size=16, normalize=mode)
    x, _ = next(iter(ds))
    assert lo <= float(tf.reduce_min(x)) < float(tf.reduce_max(x)) <= hi
    assert float(tf.reduce_min(x)) < lo / 2  # really in the mode's range, not [0, 1]


def test_feeds_keras_fit_as_is(shard_dir):
    import keras

    ds = make_dataset(shard_dir, "train", clip_frames=4, batch_size=2, training=True,
                      image_size=16, modality="rgb+flow", seed=0)
    rgb, flow = keras.Input((4, 16, 16, 3), name="rgb"), keras.Input((4, 16, 16, 2), name="flow")
    pooled = [keras.layers.GlobalAveragePooling3D()(x) for x in (rgb, flow)]
    model = keras.Model([rgb, flow], keras.layers.Dense(3)(keras.layers.Concatenate()(pooled)))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(ds, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
