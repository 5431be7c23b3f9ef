"""Nothing lost, everything counted: inputs = videos with clips + dead letters + skipped.

Real files and real runs: an unreadable label folder read without root's permission bypass
(``setpriv`` drops CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH, as root reads anything), the
skipped kinds of entry, two videos with one stem, non-finite times, bad group patterns,
the TFX ExampleGen's accounting, and the staging folder of a ``kvid ingest`` killed with
SIGKILL.
"""

import glob
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from kvid.ingest import IngestConfig, cli, run_ingest
from kvid.ingest import manifests as m
from kvid.ingest import runner
from kvid.schema import from_example
from kvid.video.decode import iter_frames
from kvid.video.testing import write_index_video

KVID = os.path.join(os.path.dirname(sys.executable), "kvid")
NO_DAC = ["setpriv", "--inh-caps=-all", "--ambient-caps=-all",
          "--bounding-set=-dac_override,-dac_read_search"]


def video(path, frames=8):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_index_video(str(path), frames, fps=25, height=32, width=32)
    return str(path)


def without_dac(argv):
    """``argv`` as a process that cannot read past file permissions (root loses its bypass)."""
    return NO_DAC + argv if os.geteuid() == 0 else argv


@pytest.fixture(scope="module")
def no_dac(tmp_path_factory):
    """Skips unless a chmod 000 folder really is unreadable to a process run ``without_dac``."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root and no setpriv to drop CAP_DAC_OVERRIDE")
    locked = tmp_path_factory.mktemp("probe") / "locked"
    locked.mkdir()
    os.chmod(locked, 0)
    try:
        probe = subprocess.run(without_dac([sys.executable, "-c",
                                            f"import os; os.listdir({str(locked)!r})"]),
                               capture_output=True, text=True, timeout=60)
    finally:
        os.chmod(locked, 0o755)
    if "PermissionError" not in probe.stderr:
        pytest.skip(f"cannot drop the permission bypass here: {probe.stderr.strip()[-200:]}")


# ----------------------------------------------------------------------------- the CLI run


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, no_dac):
    """``kvid ingest`` (a real process, without root's bypass) on a folder with one of each
    case of the issue: an unreadable class folder, a valid mp4 named .txt, a hidden mp4, a
    video outside any label folder, an empty folder named x.mp4, and a.mp4 next to a.mkv."""
    root = tmp_path_factory.mktemp("cli") / "videos"
    video(root / "move_left" / "l1.mp4")
    video(root / "move_left" / "l2.mp4")
    a_mp4 = video(root / "move_right" / "a.mp4")
    video(root / "move_right" / "a.mkv")
    video(root / "move_up" / "u.mp4")
    shutil.copy(a_mp4, root / "move_right" / "real.txt")
    shutil.copy(a_mp4, root / "move_right" / ".hidden.mp4")
    shutil.copy(a_mp4, root / "top.mp4")
    os.mkdir(root / "move_right" / "x.mp4")
    out = root.parent / "out"
    os.chmod(root / "move_left", 0)
    try:
        proc = subprocess.run(without_dac([KVID, "ingest", str(root), "-o", str(out),
                                           "--clip-frames", "4", "--split-ratios", "train=1"]),
                              capture_output=True, text=True, timeout=600)
    finally:
        os.chmod(root / "move_left", 0o755)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "dataset.json") as f:
        dataset = json.load(f)
    with open(out / "dead_letters.jsonl") as f:
        letters = [json.loads(line) for line in f if line.strip()]
    return str(root), str(out), proc.stdout, dataset, letters


def test_an_unreadable_class_folder_is_a_dead_letter_with_its_label(cli_run):
    root, _, stdout, dataset, letters = cli_run
    locked = os.path.join(root, "move_left")
    assert letters == [{"path": locked, "reason": "unreadable_dir", "label": "move_left",
                        "error": letters[0]["error"]}]
    assert "Permission denied" in letters[0]["error"]
    assert dataset["dead_letter_reasons"] == {"unreadable_dir": 1}
    assert dataset["dead_letter_labels"] == {"move_left": 1}
    assert f"cannot list folder {locked} (label move_left)" in stdout


def test_every_input_is_counted_and_the_totals_line_comes_last(cli_run):
    root, _, stdout, dataset, _ = cli_run
    assert stdout.splitlines()[-1] == \
        "inputs: 8 = 3 videos with clips + 1 dead letters + 4 skipped"
    assert (dataset["num_inputs"], dataset["num_videos_with_clips"], dataset["dead_letters"],
            dataset["num_skipped"]) == (8, 3, 1, 4)
    assert dataset["skipped"] == [
        {"path": os.path.join(root, "move_right", ".hidden.mp4"), "reason": "hidden"},
        {"path": os.path.join(root, "move_right", "real.txt"), "reason": "not_video_extension"},
        {"path": os.path.join(root, "move_right", "x.mp4"),
         "reason": "directory_named_like_video"},
        {"path": os.path.join(root, "top.mp4"), "reason": "outside_label_folder"}]
    assert dataset["skipped_reasons"] == {"directory_named_like_video": 1, "hidden": 1,
                                          "not_video_extension": 1, "outside_label_folder": 1}
    assert dataset["splits"]["train"]["videos"] == {"move_right": 2, "move_up": 1}


def test_two_videos_with_one_stem_stay_two_videos(cli_run, shard_records):
    from kvid.data.pipeline import average_video_scores

    _, out, _, dataset, _ = cli_run
    clips = [from_example(r) for r in shard_records(out, dataset, "train")]
    ids = [c.video_id for c in clips]
    assert sorted(set(ids)) == ["move_right/a.mkv", "move_right/a.mp4", "move_up/u.mp4"]
    videos, _ = average_video_scores(ids, np.zeros((len(ids), 2)))  # video-level evaluation
    assert len(videos) == dataset["splits"]["train"]["num_videos"] == 3


# ----------------------------------------------------------------------------- readers


def test_read_folder_names_every_entry_it_does_not_ingest(tmp_path):
    root = tmp_path / "v"
    video(root / "walk" / "a.mp4")
    (root / "walk" / "notes.md").write_text("x")
    (root / "walk" / ".DS_Store").write_text("x")
    os.makedirs(root / ".git" / "objects")
    os.makedirs(root / "walk" / "empty")
    os.makedirs(root / "walk" / "frames.avi")
    video(root / "walk" / "frames.avi" / "inside.mp4")  # a folder named like a video is walked
    os.mkfifo(root / "walk" / "pipe.mp4")  # opening it would block the decoder forever
    os.symlink("gone.mp4", root / "walk" / "broken.mp4")
    os.symlink("..", root / "walk" / "up")
    (root / "README.txt").write_text("x")
    man = m.read_folder(str(root))
    assert [it.video_id for it in man.items] == ["walk/a.mp4", "walk/frames.avi/inside.mp4"]
    assert [(d["path"], d["reason"], d["label"]) for d in man.dead_letters] == [
        (str(root / "walk" / "broken.mp4"), "missing_file", "walk")]
    assert sorted((os.path.relpath(s["path"], root), s["reason"]) for s in man.skipped) == [
        (".git", "hidden"), ("README.txt", "outside_label_folder"),
        ("walk/.DS_Store", "hidden"), ("walk/empty", "empty_folder"),
        ("walk/frames.avi", "directory_named_like_video"),
        ("walk/notes.md", "not_video_extension"), ("walk/pipe.mp4", "not_regular_file"),
        ("walk/up", "symlink_loop")]
    assert man.num_inputs == 2 + 1 + 8


def test_unreadable_folders_in_the_listing_readers(tmp_path, no_dac):
    """read_folder, read_ntu and read_kinetics in a process without the permission bypass."""
    video(tmp_path / "v" / "open" / "o.mp4")
    video(tmp_path / "v" / "open" / "deep" / "d.mp4")
    video(tmp_path / "ntu" / "S001C001P001R001A001_rgb.mp4")
    video(tmp_path / "ntu" / "locked" / "S001C001P002R001A002_rgb.mp4")
    video(tmp_path / "k" / "locked" / "yid_000000_000001.mp4")
    (tmp_path / "k.csv").write_text("label,youtube_id,time_start,time_end\nx,yid,0,1\n")
    os.makedirs(tmp_path / "v" / "closed")
    locked = [tmp_path / "v" / "closed", tmp_path / "v" / "open" / "deep",
              tmp_path / "ntu" / "locked", tmp_path / "k" / "locked"]
    code = ("import json, sys\nfrom kvid.ingest import manifests as m\n"
            "out = {n: [[d['path'], d['reason'], d.get('label')] for d in man.dead_letters]\n"
            "       for n, man in [('folder', m.read_folder(sys.argv[1])),\n"
            "                      ('ntu', m.read_ntu(sys.argv[2])),\n"
            "                      ('kinetics', m.read_kinetics(sys.argv[3], sys.argv[4]))]}\n"
            "print(json.dumps(out))\n")
    for path in locked:
        os.chmod(path, 0)
    try:
        proc = subprocess.run(without_dac([sys.executable, "-c", code, str(tmp_path / "v"),
                                           str(tmp_path / "ntu"), str(tmp_path / "k.csv"),
                                           str(tmp_path / "k")]),
                              capture_output=True, text=True, timeout=120)
    finally:
        for path in locked:
            os.chmod(path, 0o755)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    assert got["folder"] == [[str(locked[0]), "unreadable_dir", "closed"],
                             [str(locked[1]), "unreadable_dir", "open"]]
    assert got["ntu"] == [[str(locked[2]), "unreadable_dir", None]]
    assert got["kinetics"][0] == [str(locked[3]), "unreadable_dir", None]
    assert got["kinetics"][1][1:] == ["missing_file", "x"]  # the row whose file it hides


def test_an_unreadable_root_is_a_clear_error(tmp_path, no_dac):
    root = tmp_path / "v"
    video(root / "a" / "a.mp4")
    os.chmod(root, 0)
    try:
        proc = subprocess.run(without_dac([
            sys.executable, "-c", "import sys; from kvid.ingest import manifests as m\n"
            "try:\n    m.read_folder(sys.argv[1])\nexcept ValueError as e:\n    print(e)\n",
            str(root)]), capture_output=True, text=True, timeout=60)
    finally:
        os.chmod(root, 0o755)
    assert proc.stdout.startswith(f"cannot list the input folder {root}: PermissionError")


def test_same_stem_different_files_get_distinct_ids_in_every_reader(tmp_path):
    for ext in (".mp4", ".mkv"):
        video(tmp_path / "wave" / f"a{ext}")
    assert [it.video_id for it in m.read_folder(str(tmp_path)).items] == \
        ["wave/a.mkv", "wave/a.mp4"]
    (tmp_path / "m.csv").write_text("path,label\nwave/a.mp4,wave\nwave/a.mkv,wave\n"
                                    f"{tmp_path}/wave/a.mp4,wave\n")  # the first file again
    man = m.read_csv(str(tmp_path / "m.csv"))
    assert [it.video_id for it in man.items] == ["wave/a.mp4", "wave/a.mkv"]
    assert [(d["reason"], d["label"]) for d in man.dead_letters] == [
        ("duplicate_video_id", "wave")]
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 wave\n")
    (lists / "trainlist01.txt").write_text("wave/a.mp4 1\n")
    (lists / "testlist01.txt").write_text("wave/a.mkv\n")
    assert [it.video_id for it in m.read_ucf101(str(tmp_path), str(lists)).items] == \
        ["wave/a.mp4", "wave/a.mkv"]
    (lists / "wave_test_split1.txt").write_text("a.mp4 1\na.mkv 2\n")
    hmdb = m.read_hmdb51(str(tmp_path), str(lists))
    assert [it.video_id for it in hmdb.items] == ["wave/a.mp4", "wave/a.mkv"]
    assert m.VideoItem("/x/a.mp4", "w", "g").video_id != m.VideoItem("/x/a.mkv", "w", "g").video_id


def test_hmdb51_videos_left_out_of_the_split_are_listed_as_skipped(tmp_path):
    video(tmp_path / "wave" / "a.mp4")
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "wave_test_split1.txt").write_text("a.mp4 1\nb.mp4 0\n")
    man = m.read_hmdb51(str(tmp_path), str(lists))
    assert man.skipped == ({"path": str(tmp_path / "wave" / "b.mp4"),
                            "reason": "not_in_official_split"},)
    assert man.num_inputs == 2


def test_non_finite_times_are_bad_rows(tmp_path):
    video(tmp_path / "a.mp4")
    (tmp_path / "m.csv").write_text(
        "path,label,start_sec,end_sec,video_id\n"
        "a.mp4,x,0,0.2,ok\n"
        "a.mp4,x,inf,,r3\na.mp4,x,,nan,r4\na.mp4,x,nan,1,r5\na.mp4,x,0,inf,r6\n"
        "a.mp4,x,-1,1,r7\n")
    man = m.read_csv(str(tmp_path / "m.csv"))
    assert [it.video_id for it in man.items] == ["ok"]
    assert [(d["reason"], d["error"].split(": ")[0].rsplit(":", 1)[1]) for d in man.dead_letters] \
        == [("bad_row", str(n)) for n in range(3, 8)]
    (tmp_path / "k.csv").write_text("label,youtube_id,time_start,time_end\n"
                                    "x,a,inf,10\nx,a,0,nan\nx,a,0,10\n")
    kinetics = m.read_kinetics(str(tmp_path / "k.csv"), str(tmp_path))
    assert [d["reason"] for d in kinetics.dead_letters] == ["bad_row", "bad_row"]
    assert [(it.start_sec, it.end_sec) for it in kinetics.items] == [(0.0, 10.0)]


@pytest.mark.parametrize("kwargs", [{"fps": math.inf}, {"fps": math.nan},
                                    {"start_sec": math.inf}, {"start_sec": math.nan},
                                    {"end_sec": math.nan}, {"end_sec": math.inf}])
def test_the_decoder_refuses_non_finite_values(tmp_path, kwargs):
    """At fps=inf every target time is the first frame's: the repeat loop never ended."""
    path = video(tmp_path / "a.mp4")
    with pytest.raises(ValueError, match=f"{next(iter(kwargs))} must be a finite number"):
        next(iter_frames(path, **kwargs))


def test_a_bad_group_pattern_is_a_clear_value_error(tmp_path):
    video(tmp_path / "wave" / "a.mp4")
    (tmp_path / "m.csv").write_text("path,label\nwave/a.mp4,wave\n")
    for call in (lambda: m.read_folder(str(tmp_path), group_pattern="(["),
                 lambda: m.read_csv(str(tmp_path / "m.csv"), group_pattern=["ok", "(["]),
                 lambda: m.group_from_name("a.mp4", "([")):
        with pytest.raises(ValueError, match=r"group_pattern is not a valid regular expression"):
            call()


# ----------------------------------------------------------------------------- runs


def test_a_csv_run_counts_every_row(tmp_path):
    video(tmp_path / "v" / "a.mp4", 20)
    video(tmp_path / "v" / "a.mkv", 20)
    (tmp_path / "m.csv").write_text("path,label,start_sec,end_sec\n"
                                    "v/a.mp4,x,,\nv/a.mkv,x,,\nv/a.mp4,x,inf,\n"
                                    "v/a.mp4,x,0,nan\nv/gone.mp4,x,,\nv/a.mp4,x,0.4,\n")
    dataset = run_ingest(str(tmp_path / "m.csv"), str(tmp_path / "out"),
                         IngestConfig(clip_frames=4, split_ratios={"train": 1}))
    assert (dataset["num_inputs"], dataset["num_videos_with_clips"], dataset["dead_letters"],
            dataset["num_skipped"]) == (6, 3, 3, 0)
    assert dataset["dead_letter_reasons"] == {"bad_row": 2, "missing_file": 1}
    assert dataset["splits"]["train"]["num_videos"] == 3


def test_nothing_to_ingest_is_one_line(tmp_path, capsys):
    (tmp_path / "v" / "wave").mkdir(parents=True)
    (tmp_path / "v" / "wave" / "a.txt").write_text("x")
    with pytest.raises(SystemExit) as e:
        cli.main([str(tmp_path / "v"), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "no videos found" in err
    assert "skipped 1: {'not_video_extension': 1}" in err


def test_the_tfx_example_gen_counts_every_input(tmp_path):
    """VideoExampleGen's executor runs the same readers and records the same accounting."""
    from tfx.proto import example_gen_pb2
    from tfx.types import standard_artifacts
    from tfx.utils import proto_utils

    from kvid.tfx import example_gen

    root = tmp_path / "videos"
    video(root / "wave" / "a_actor01.mp4")
    video(root / "wave" / "a_actor01.mkv")
    video(root / "clap" / "c_actor02.mp4")
    (root / "clap" / "broken.mp4").write_bytes(b"not a video")
    (root / "clap" / "notes.txt").write_text("x")
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.split_names = '["train", "eval"]'
    gen = example_gen.VideoExampleGen(str(root), IngestConfig(clip_frames=4))
    props = {k: v for k, v in gen.exec_properties.items() if v is not None}
    for key in ("input_config", "output_config", "custom_config"):
        if not isinstance(props[key], str):
            props[key] = proto_utils.proto_to_json(props[key])
    props["output_data_format"] = example_gen_pb2.FORMAT_TF_EXAMPLE
    executor = example_gen.VideoExampleGenExecutor(
        example_gen.VideoExampleGenExecutor.Context(beam_pipeline_args=["--runner=FnApiRunner"]))
    executor.Do({}, {"examples": [examples]}, props)
    with open(tmp_path / "examples" / "dataset.json") as f:
        info = json.load(f)
    assert (info["num_inputs"], info["num_videos_with_clips"], info["dead_letters"],
            info["num_skipped"]) == (5, 3, 1, 1)
    assert info["dead_letter_reasons"] == {"invalid_data": 1}
    assert info["dead_letter_labels"] == {"clap": 1}
    assert info["skipped"] == [{"path": str(root / "clap" / "notes.txt"),
                                "reason": "not_video_extension"}]
    assert sum(s["videos"]["wave"] for s in info["splits"].values()) == 2  # one group, 2 ids


# ----------------------------------------------------------------------------- staging


def _staging(out):
    return sorted(glob.glob(os.path.join(out, runner._STAGING_PREFIX + "*")))


def test_a_killed_ingest_leaves_staging_that_the_next_run_deletes(tmp_path):
    """kill -9 a real ``kvid ingest`` mid-run: while it lives its staging folder is kept (its
    lock is held); once it is dead the next run deletes it, without --overwrite."""
    one = video(tmp_path / "src.mp4", 60)
    for label in ("a", "b"):
        os.makedirs(tmp_path / "v" / label)
        for k in range(40):  # hard links: 80 videos to decode, no bytes copied
            os.link(one, tmp_path / "v" / label / f"{label}{k:02d}.mp4")
    out = str(tmp_path / "out")
    proc = subprocess.Popen([KVID, "ingest", str(tmp_path / "v"), "-o", out,
                             "--clip-frames", "2", "--stride", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not glob.glob(os.path.join(out, ".incomplete-*", runner.STAGING_LOCK)):
            assert proc.poll() is None, "ingest ended before it could be killed"
            assert time.monotonic() < deadline, "no locked staging folder appeared"
            time.sleep(0.02)
        staging = _staging(out)
        assert len(staging) == 1
        assert runner.clean_stale_staging(out) == []  # alive: neither deleted nor reported
        assert _staging(out) == staging
        assert proc.poll() is None, "ingest ended before it could be killed: more input"
        proc.kill()
        assert proc.wait(timeout=60) == -9
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert _staging(out) == staging and not os.path.exists(os.path.join(out, "dataset.json"))
    video(tmp_path / "small" / "a" / "x.mp4")
    run_ingest(str(tmp_path / "small"), out, IngestConfig(clip_frames=4))
    assert _staging(out) == []
    assert sorted(os.listdir(out)) == ["dataset.json", "dead_letters.jsonl", "train"]


def test_staging_without_a_lock_is_kept_and_named(tmp_path, caplog):
    """No lock file (an older kvid, or a run that has just made the folder): it may be in
    use, so even --overwrite keeps it, and the warning says where it is."""
    video(tmp_path / "v" / "a" / "a.mp4")
    out = tmp_path / "out"
    stray = out / ".incomplete-0123abcd"
    os.makedirs(stray / "train")
    (stray / "train" / "clips-00000-of-00001.tfrecord").write_bytes(b"partial")
    with caplog.at_level(logging.WARNING, logger=runner.__name__):
        run_ingest(str(tmp_path / "v"), str(out), IngestConfig(clip_frames=4), overwrite=True)
    assert os.path.isfile(stray / "train" / "clips-00000-of-00001.tfrecord")
    assert str(stray) in caplog.text and "staging" in caplog.text
