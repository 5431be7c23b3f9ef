import numpy as np
import pytest

from kvid.data import dataset_from_videos, list_videos
from kvid.video.encode import write_video

from data_fixtures import frame_ids, known_frame


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    """<root>/<label>/<video>.mkv, lossless (FFV1), 12 known frames each."""
    root = tmp_path_factory.mktemp("videos")
    for label in ("run", "jump"):
        (root / label).mkdir()
        write_video(str(root / label / "a.mkv"), (known_frame(i, 24, 32) for i in range(12)),
                    codec="ffv1")
    return str(root)


def test_eval_from_videos_decodes_exact_frames_in_order(video_dir):
    paths, labels, names = list_videos(video_dir)
    assert names == ["jump", "run"] and labels == [0, 1]
    ds = dataset_from_videos(video_dir, clip_frames=4, batch_size=2, training=False,
                             image_size=(24, 32), short_side=24)
    (x, y), = list(ds)
    assert x.shape == (2, 4, 24, 32, 3) and y.numpy().tolist() == [0, 1]
    assert frame_ids(x[0].numpy()) == [4, 5, 6, 7]
    np.testing.assert_allclose(x[0, 0].numpy() * 255, known_frame(4, 24, 32), atol=1)


def test_training_from_paths_with_label_names(video_dir):
    paths, _, _ = list_videos(video_dir)
    ds = dataset_from_videos(paths, ["jump", "run"], clip_frames=4, batch_size=2,
                             training=True, image_size=16, seed=0, label_mode="one_hot",
                             cache=True)
    x, y = next(iter(ds))
    assert x.shape == (2, 4, 16, 16, 3) and y.shape == (2, 2)
    with pytest.raises(ValueError, match="one label per video"):
        dataset_from_videos(paths, [0], clip_frames=4, batch_size=2, training=True,
                            image_size=16)
