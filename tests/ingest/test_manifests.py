"""Manifest readers: labels, groups and splits of every format; bad rows as dead letters."""

import collections
import os

import pytest

from kvid.ingest import manifests as m


def touch(path, data=b"x"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def splits_by_group(items):
    seen = collections.defaultdict(set)
    for it in items:
        seen[it.group].add(it.split)
    return seen


def test_group_from_name_patterns():
    assert m.group_from_name("v_ApplyEyeMakeup_g08_c01.avi") == "08"
    assert m.group_from_name("grow_actor03_v001.mp4") == "actor03"
    assert m.group_from_name("clip.mp4") == "clip"
    assert m.group_from_name("subj7-take2.mp4", r"subj(\d+)") == "7"
    assert m.group_from_name("x_P002_y.mp4", [r"nomatch(\d)", r"P\d+"]) == "P002"


@pytest.mark.parametrize("num_groups,expected", [
    (6, {"train": 4, "val": 1, "test": 1}),
    (3, {"train": 1, "val": 1, "test": 1}),
    (2, {"train": 1, "val": 1, "test": 0}),
    (20, {"train": 14, "val": 3, "test": 3}),
    (101, {"train": 71, "val": 15, "test": 15}),
])
def test_split_quotas_fill_every_split_when_possible(num_groups, expected):
    items = [m.VideoItem(f"/v/{g}_{k}.mp4", "a", f"g{g}") for g in range(num_groups) for k in range(2)]
    out = m.assign_splits(items)
    groups_per_split = {s: len({it.group for it in out if it.split == s}) for s in expected}
    assert groups_per_split == expected
    assert all(len(s) == 1 for s in splits_by_group(out).values())


def test_assign_splits_is_deterministic_seeded_and_keeps_official_splits():
    items = [m.VideoItem(f"/v/{g}.mp4", "a", f"actor{g:02d}") for g in range(12)]
    items.append(m.VideoItem("/v/fixed.mp4", "a", "actor00", split="test"))
    a, b = m.assign_splits(items, seed=1), m.assign_splits(list(reversed(items)), seed=1)
    assert {it.path: it.split for it in a} == {it.path: it.split for it in b}
    assert a[-1].split == "test"
    c = m.assign_splits(items, seed=2)
    assert [it.split for it in a] != [it.split for it in c]
    with pytest.raises(ValueError, match="split ratios"):
        m.assign_splits(items, {"train": -1, "val": 0.5})


def test_read_folder_any_depth_groups_and_unknown_labels(tmp_path):
    root = str(tmp_path)
    touch(f"{root}/walk/deep/er/walk_actor01_v000.mp4")
    touch(f"{root}/walk/walk_actor02_v001.AVI")
    touch(f"{root}/run/v_Run_g03_c01.webm")
    touch(f"{root}/run/notes.txt")
    touch(f"{root}/jump/x.mkv")
    man = m.read_folder(root, labels=["run", "walk"])
    assert man.labels == ("run", "walk")
    assert [(it.label, it.group, it.video_id) for it in man.items] == [
        ("run", "03", "run/v_Run_g03_c01.webm"),
        ("walk", "actor01", "walk/deep/er/walk_actor01_v000.mp4"),
        ("walk", "actor02", "walk/walk_actor02_v001.AVI")]
    assert [(d["reason"], os.path.basename(d["path"]), d["label"]) for d in man.dead_letters] \
        == [("unknown_label", "x.mkv", "jump")]
    assert man.skipped == ({"path": f"{root}/run/notes.txt", "reason": "not_video_extension"},)
    assert m.read_folder(root).labels == ("jump", "run", "walk")
    with pytest.raises(ValueError, match="directory"):
        m.read_folder(f"{root}/nope")


def test_read_csv_rows_and_bad_rows(tmp_path):
    a = touch(str(tmp_path / "vids" / "a.mp4"))
    touch(str(tmp_path / "vids" / "b_g07_c1.mp4"))
    csv_path = tmp_path / "manifest.csv"
    csv_path.write_text(
        "path,label,group,split,start_sec,end_sec\n"
        f"{a},wave,,train,,\n"  # absolute path, group from name
        "vids/b_g07_c1.mp4,clap,,,1.5,3\n"  # relative to the CSV, split by hash later
        "vids/missing.mp4,wave,g1,test,,\n"
        "vids/a.mp4,,g1,,,\n"  # empty label
        "vids/a.mp4,wave,g1,,5,2\n"  # end before start
        "vids/a.mp4,dance,g1,,,\n")  # not in the label map
    man = m.read_csv(str(csv_path), labels=["clap", "wave"])
    assert [(it.label, it.group, it.split, it.start_sec, it.end_sec) for it in man.items] == [
        ("wave", "a", "train", None, None), ("clap", "07", None, 1.5, 3.0)]
    assert [it.video_id for it in man.items] == ["vids/a.mp4", "vids/b_g07_c1.mp4@1.5-3"]
    assert [d["reason"] for d in man.dead_letters] == [
        "missing_file", "bad_row", "bad_row", "unknown_label"]
    bad = tmp_path / "bad.csv"
    bad.write_text("file,class\nx,y\n")
    with pytest.raises(ValueError, match="path,label"):
        m.read_csv(str(bad))


def test_read_ucf101_official_split_with_groups(tmp_path):
    root, lists = tmp_path / "UCF-101", tmp_path / "ucfTrainTestlist"
    names = {"ApplyEyeMakeup": [1, 8], "HandstandPushups": [1, 9]}
    for cls, groups in names.items():
        stem = "HandStandPushups" if cls == "HandstandPushups" else cls  # the real mismatch
        for g in groups:
            touch(str(root / cls / f"v_{stem}_g{g:02d}_c01.avi"))
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 HandstandPushups\n")
    (lists / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n"
        "HandstandPushups/v_HandStandPushups_g09_c01.avi 2\n"
        "HandstandPushups/v_HandStandPushups_g10_c01.avi 2\n")  # missing file
    (lists / "testlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\n"
        "HandstandPushups/v_HandStandPushups_g01_c01.avi\r\n")
    man = m.read_ucf101(str(root), str(lists), split=1)
    assert man.labels == ("ApplyEyeMakeup", "HandstandPushups")
    assert [(it.label, it.group, it.split) for it in man.items] == [
        ("ApplyEyeMakeup", "g08", "train"), ("HandstandPushups", "g09", "train"),
        ("ApplyEyeMakeup", "g01", "test"), ("HandstandPushups", "g01", "test")]
    assert [d["reason"] for d in man.dead_letters] == ["missing_file"]
    with pytest.raises(ValueError, match="split"):
        m.read_ucf101(str(root), str(lists), split=4)


def test_read_hmdb51_marks(tmp_path):
    root, lists = tmp_path / "hmdb", tmp_path / "splits"
    for cls in ("brush_hair", "cartwheel"):
        for k in range(3):
            touch(str(root / cls / f"{cls}_{k}.avi"))
    lists.mkdir()
    (lists / "brush_hair_test_split1.txt").write_text(
        "brush_hair_0.avi 1 \nbrush_hair_1.avi 2 \nbrush_hair_2.avi 0 \n")
    (lists / "cartwheel_test_split1.txt").write_text(
        "cartwheel_0.avi 1 \ncartwheel_1.avi 1 \ncartwheel_2.avi 2 \ngone.avi 2\nbroken line here\n")
    (lists / "cartwheel_test_split2.txt").write_text("cartwheel_0.avi 2\n")
    man = m.read_hmdb51(str(root), str(lists), split=1)
    assert man.labels == ("brush_hair", "cartwheel")
    assert [(it.label, os.path.basename(it.path), it.split) for it in man.items] == [
        ("brush_hair", "brush_hair_0.avi", "train"), ("brush_hair", "brush_hair_1.avi", "test"),
        ("cartwheel", "cartwheel_0.avi", "train"), ("cartwheel", "cartwheel_1.avi", "train"),
        ("cartwheel", "cartwheel_2.avi", "test")]
    assert [d["reason"] for d in man.dead_letters] == ["missing_file", "bad_row"]


def test_read_kinetics_trimmed_or_whole_videos(tmp_path):
    vids = tmp_path / "videos"
    touch(str(vids / "train" / "abseiling" / "aaa_000010_000020.mp4"))
    touch(str(vids / "bbb.mkv"))
    csv_path = tmp_path / "train.csv"
    csv_path.write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "abseiling,aaa,10,20,train\n"
        "air drumming,bbb,3,13,validate\n"
        "abseiling,ccc,0,10,train\n"  # no file
        "abseiling,ddd,x,10,train\n")  # bad number
    man = m.read_kinetics(str(csv_path), str(vids))
    assert man.labels == ("abseiling", "air drumming")
    assert [(it.label, it.group, it.split, it.start_sec, it.end_sec, it.video_id)
            for it in man.items] == [
        ("abseiling", "aaa", "train", None, None, "aaa_000010_000020"),
        ("air drumming", "bbb", "val", 3.0, 13.0, "bbb_000003_000013")]
    assert [d["reason"] for d in man.dead_letters] == ["missing_file", "bad_row"]


def test_read_ntu_protocols(tmp_path):
    names = ["S001C001P001R001A001_rgb.avi",  # subject 1 (train xsub), camera 1 (test xview)
             "S001C002P003R002A001_rgb.avi",  # subject 3 (test xsub), camera 2 (train xview)
             "S002C003P002R001A013_rgb.avi",  # setup 2 (train xset)
             "readme_rgb.avi"]
    for n in names:
        touch(str(tmp_path / "nturgb+d_rgb" / n))
    xsub = m.read_ntu(str(tmp_path), protocol="xsub")
    assert xsub.labels == ("A001", "A013")
    assert [(it.video_id, it.label, it.group, it.split) for it in xsub.items] == [
        ("S001C001P001R001A001", "A001", "P001", "train"),
        ("S001C002P003R002A001", "A001", "P003", "test"),
        ("S002C003P002R001A013", "A013", "P002", "train")]
    assert [d["reason"] for d in xsub.dead_letters] == ["bad_row"]
    xview = m.read_ntu(str(tmp_path), protocol="xview")
    assert [it.split for it in xview.items] == ["test", "train", "train"]
    xset = m.read_ntu(str(tmp_path), protocol="xset")
    assert [it.split for it in xset.items] == ["test", "test", "train"]
    with pytest.raises(ValueError, match="protocol"):
        m.read_ntu(str(tmp_path), protocol="xwhat")


def test_carve_split_moves_whole_groups_from_train(tmp_path):
    items = [m.VideoItem(f"/v/{g}_{k}.avi", "a", f"g{g}", split="train")
             for g in range(10) for k in range(3)]
    items.append(m.VideoItem("/v/t.avi", "a", "g99", split="test"))
    man = m.carve_split(m.Manifest(tuple(items), ("a",)), 0.2)
    groups = splits_by_group(man.items)
    assert all(len(s) == 1 for s in groups.values())
    assert sum(s == {"val"} for s in groups.values()) == 2 and groups["g99"] == {"test"}


def test_video_item_validation():
    assert m.VideoItem("/x/clip.mp4", "a", "g").video_id == "clip.mp4"
    with pytest.raises(ValueError, match="end_sec"):
        m.VideoItem("/x/clip.mp4", "a", "g", start_sec=3, end_sec=1)
