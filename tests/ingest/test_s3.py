"""Ingest from and to an S3-compatible store: moto's S3 server on loopback, reached through
Beam's own S3 filesystem (--s3_endpoint_url), gives the records a local run gives."""

import json
import logging
import os
import shutil

import pytest

from kvid import dataset as dataset_file
from kvid.ingest import cli

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

BUCKET = "kvid-test"


@pytest.fixture(scope="module")
def s3():
    """(endpoint URL, boto3 client, the Beam flags that reach it) of a fresh moto server."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=url, aws_access_key_id="k",
                          aws_secret_access_key="s", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    flags = [f"--s3_endpoint_url={url}", "--s3_access_key_id=k", "--s3_secret_access_key=s",
             "--s3_region_name=us-east-1"]
    yield url, client, flags
    server.stop()


def keys(client, prefix):
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@pytest.fixture(scope="module")
def tree(synth_root, tmp_path_factory, s3):
    """The synthetic videos plus what a real bucket holds besides videos (a hidden file, a
    note, a file outside any label folder, a corrupt video), locally and uploaded alike."""
    _, client, _ = s3
    root = str(tmp_path_factory.mktemp("s3tree") / "videos")
    shutil.copytree(synth_root, root)
    extras = {".DS_Store": b"x", "README.txt": b"videos", "move_left/notes.txt": b"n",
              "move_up/.hidden.mp4": b"h", "move_right/broken.mp4": b"not a video at all"}
    for rel, data in extras.items():
        with open(os.path.join(root, rel), "wb") as f:
            f.write(data)
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            client.upload_file(path, BUCKET, "videos/" + os.path.relpath(path, root))
    return root


def ingest(source, out, *extra):
    return cli.main([source, "-o", out, "--seed", "3", *extra])


def test_s3_round_trip_gives_the_local_records(tree, s3, tmp_path, shard_records, read_jsonl,
                                                capsys):
    _, client, flags = s3
    local = str(tmp_path / "local")
    assert ingest(tree, local) == 0
    assert ingest(f"s3://{BUCKET}/videos", f"s3://{BUCKET}/shards", *flags) == 0
    capsys.readouterr()

    published = keys(client, "shards/")
    assert "shards/dataset.json" in published and "shards/dead_letters.jsonl" in published
    assert not [k for k in published if "/." in k or "staging" in k]  # staging is gone

    # Training reads a local copy (TensorFlow has no s3:// filesystem): `kvid copy`.
    from kvid.cli import main as kvid_main
    copy = str(tmp_path / "copied")
    assert kvid_main(["copy", f"s3://{BUCKET}/shards", copy, "--quiet", *flags]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["files"] == len(published)
    assert sorted(os.path.relpath(os.path.join(d, n), copy).replace(os.sep, "/")
                  for d, _, ns in os.walk(copy) for n in ns) == \
        sorted(k[len("shards/"):] for k in published)

    want, got = dataset_file.load(local), dataset_file.load(copy)
    for key in ("labels", "splits", "num_inputs", "num_videos_with_clips", "num_skipped",
                "dead_letters", "dead_letter_reasons", "dead_letter_labels", "skipped_reasons",
                "counters"):
        assert got[key] == want[key], key
    assert want["num_inputs"] == 18 + 4 + 1  # 18 videos, 4 non-videos, 1 corrupt
    assert want["num_videos_with_clips"] == 18 and want["dead_letters"] == 1
    assert [s["path"] for s in got["skipped"]] == \
        [f"s3://{BUCKET}/videos/" + os.path.relpath(s["path"], tree) for s in want["skipped"]]
    assert "--s3_secret_access_key=***" in got["params"]["pipeline_args"]  # never the secret
    assert "=s" not in " ".join(got["params"]["pipeline_args"])
    for split in want["splits"]:
        assert sorted(shard_records(copy, got, split)) == sorted(shard_records(local, want, split))
    [dead] = read_jsonl(os.path.join(copy, "dead_letters.jsonl"))
    assert dead["path"] == f"s3://{BUCKET}/videos/move_right/broken.mp4"

    # tf.data trains from the copy as from any ingest output.
    from kvid.data import InputConfig, make_dataset
    clips, labels = next(iter(make_dataset(copy, "train", InputConfig(
        clip_frames=8, image_size=(32, 32), num_classes=3), batch_size=4, training=False)))
    assert clips.shape == (4, 8, 32, 32, 3) and set(labels.numpy()) <= {0, 1, 2}

    # A finished dataset is not overwritten without --overwrite; with it, it is replaced.
    with pytest.raises(SystemExit) as e:
        ingest(f"s3://{BUCKET}/videos", f"s3://{BUCKET}/shards", *flags)
    assert e.value.code == 2 and "not empty" in capsys.readouterr().err
    assert keys(client, "shards/") == published
    assert kvid_main(["copy", f"s3://{BUCKET}/shards", copy, "--quiet", *flags]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_remote_errors_are_one_line(s3, tmp_path, capsys):
    _, _, flags = s3
    with pytest.raises(SystemExit) as e:
        ingest(f"s3://{BUCKET}/no-such-videos", str(tmp_path / "o"), *flags)
    assert e.value.code == 2 and "Traceback" not in capsys.readouterr().err
    from kvid.cli import main as kvid_main
    assert kvid_main(["copy", f"s3://{BUCKET}/nothing-here", str(tmp_path / "c"), *flags]) == 2
    assert "nothing to copy" in capsys.readouterr().err
    assert kvid_main(["train", "--data", f"s3://{BUCKET}/shards", "--model", "single_frame",
                      "--out", str(tmp_path / "run")]) == 2
    assert "kvid copy" in capsys.readouterr().err


def test_a_csv_manifest_on_s3_with_relative_and_absolute_paths(tree, s3, capsys):
    """No dead letters: the store gets no empty dead_letters.jsonl (Beam's S3 writer cannot
    write an empty object), and dataset.json says there were none."""
    _, client, flags = s3
    def first(label):
        return sorted(n for n in os.listdir(f"{tree}/{label}") if n.endswith("_v000.mp4"))[0]

    rows = ["path,label,split", f"move_left/{first('move_left')},move_left,train"]  # relative
    rows += [f"s3://{BUCKET}/videos/{label}/{first(label)},{label},test"
             for label in ("move_right", "move_up")]
    client.put_object(Bucket=BUCKET, Key="videos/few.csv", Body="\n".join(rows).encode())
    assert ingest(f"s3://{BUCKET}/videos/few.csv", f"s3://{BUCKET}/few", *flags) == 0
    capsys.readouterr()
    assert keys(client, "few/") == ["few/dataset.json", "few/test/clips-00000-of-00001.tfrecord",
                                    "few/train/clips-00000-of-00001.tfrecord"]
    info = json.loads(client.get_object(Bucket=BUCKET, Key="few/dataset.json")["Body"].read())
    assert info["num_inputs"] == 3 and info["dead_letters"] == 0
    assert {s: v["num_videos"] for s, v in info["splits"].items()} == {"train": 1, "test": 2}


def test_a_missing_object_in_a_remote_list_is_a_dead_letter(tree, s3):
    from apache_beam.options.pipeline_options import PipelineOptions

    from kvid import files
    from kvid.ingest import manifests

    _, client, flags = s3
    files.configure(PipelineOptions(flags))
    name = sorted(n for n in os.listdir(f"{tree}/move_up") if n.endswith(".mp4"))[0]
    client.put_object(Bucket=BUCKET, Key="lists/two.csv", Body=(
        f"path,label\ns3://{BUCKET}/videos/move_up/{name},move_up\n"
        f"s3://{BUCKET}/videos/move_up/gone.mp4,move_up\n").encode())
    man = manifests.read_csv(f"s3://{BUCKET}/lists/two.csv")
    assert [it.path for it in man.items] == [f"s3://{BUCKET}/videos/move_up/{name}"]
    assert [(d["path"], d["reason"]) for d in man.dead_letters] == \
        [(f"s3://{BUCKET}/videos/move_up/gone.mp4", "missing_file")]
