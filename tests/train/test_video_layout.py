"""The papers' protocol from the CLI on video-level records: ingest whole videos, train on
random clips drawn over each video, evaluate at 1x1, Nx1 and NxM views, export, predict."""

import json
import os

from kvid.cli import main


def test_whole_video_records_from_ingest_to_the_cost_of_views(tiny_data, tmp_path, capsys):
    data, run = str(tmp_path / "data"), str(tmp_path / "run")
    # The 16-frame videos in chunks of 10 sharing 4: every video is two records.
    assert main(["ingest", tiny_data["videos"], "-o", data, "--layout", "video",
                 "--max-frames", "10", "--chunk-overlap", "4", "--size", "32x32"]) == 0
    info = json.load(open(os.path.join(data, "dataset.json")))
    assert info["layout"] == "video" and info["clip_frames"] is None
    assert all(s["num_clips"] == 2 * s["num_videos"] for s in info["splits"].values())
    capsys.readouterr()

    train = ["train", "--data", data, "--output", run, "--model", "cnn_gru", "--model-args",
             '{"units": 8, "small_cnn_widths": [8, 16], "dropout": 0.0}', "--epochs", "1",
             "--batch-size", "4"]
    assert main(train) == 2  # the records store no clip length
    assert "give --clip-frames" in capsys.readouterr().err
    assert main(train + ["--clip-frames", "6"]) == 2  # 6 frames do not fit the 4 shared + 1
    assert "--chunk-overlap 5" in capsys.readouterr().err
    assert not os.path.exists(run)
    assert main(train + ["--clip-frames", "4"]) == 0
    capsys.readouterr()

    assert main(["evaluate", run, "--clips", "3", "--crops", "10"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    videos = info["splits"]["test"]["num_videos"]
    assert line["clip"]["count"] == 2 * videos  # one centred clip per record
    assert line["video"]["count"] == videos
    assert [(r["clips"], r["crops"], r["videos"]) for r in line["views"]] == \
        [(1, 1, videos), (3, 1, videos), (3, 10, videos)]
    assert line["views"][2]["gflops_per_video"] > line["views"][1]["gflops_per_video"]

    assert main(["export", run, str(tmp_path / "served" / "1")]) == 0
    meta = json.load(open(tmp_path / "served" / "1" / "assets" / "kvid.json"))
    assert meta["clip_frames"] == 4 and meta["labels"] == info["labels"]
