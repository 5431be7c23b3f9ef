"""tf.data input: parse clip records, decode, sample, augment and batch for model.fit."""

from kvid.data.augment import NO_AUGMENT, AugmentConfig
from kvid.data.pipeline import (InputConfig, average_video_scores, make_config, make_dataset,
                                make_eval_views, predict_video_scores, preprocess_clip)
from kvid.data.sources import resolve_files
from kvid.dataset import load as load_dataset_info
from kvid.data.videos import dataset_from_videos, list_videos, load_video

__all__ = [
    "AugmentConfig", "NO_AUGMENT", "InputConfig", "average_video_scores", "make_config",
    "make_dataset", "make_eval_views", "predict_video_scores", "preprocess_clip",
    "load_dataset_info", "resolve_files", "dataset_from_videos", "list_videos", "load_video",
]
