"""Stream sessions of ``kvid serve``: a stream MoViNet classified frame by frame with its
states held by the server, equal to a client carrying the states through TF Serving's
own API (REST and gRPC) and to the whole clip; a window model's ring buffer, equal to its
windows classified whole; and the limits and bad input of the API."""

from __future__ import annotations

import base64
import json
import socket
import time

import numpy as np
import pytest
from serving_fixtures import STREAM_LABELS as LABELS
from serving_fixtures import http_request
from serving_fixtures import start_stream_server as _start

from kvid.serving.contract import STREAMS_PATH


@pytest.fixture(scope="module")
def server(stream_base, toy_versions):
    srv = _start(stream_base, toy_versions)
    yield srv
    srv.stop()


def _call(srv, method, path, body=None, content_type="application/json"):
    status, _, data = http_request(srv.rest_port, method, path, body,
                                   {"Content-Type": content_type} if body is not None else {})
    return status, json.loads(data)


def test_a_session_streams_what_carried_states_and_the_whole_clip_give(server, frames):
    from kvid.serving.client import Client

    rest = Client(rest_url=server.rest_url, model="stream")
    grpc = Client(grpc_target=server.grpc_target, model="stream")
    with rest.open_stream(top_k=3) as session, rest.open_stream(top_k=3, carry=True) as \
            carried, grpc.open_stream(top_k=3) as over_grpc:
        assert session.labels == LABELS == carried.labels
        status, summary = _call(server, "GET", STREAMS_PATH)
        assert status == 200 and summary["sessions"] == 1  # carried streams hold nothing
        steps = [[f] for f in frames[:4]] + [frames[4:6]]  # a frame, then a 2-frame chunk
        seen = []
        for chunk in steps:
            a, b, c = session.send(chunk), carried.send(chunk), over_grpc.send(chunk)
            assert [x[0] for x in a] == [x[0] for x in b] == [x[0] for x in c]
            np.testing.assert_allclose([x[1] for x in a], [x[1] for x in b], atol=1e-5)
            np.testing.assert_allclose([x[1] for x in a], [x[1] for x in c], atol=1e-5)
            assert sorted(x[0] for x in a) == sorted(LABELS)
            seen.append(dict(a))
        assert session.frames == carried.frames == 6
        # the scores move with the frames, and end at the causal model on the whole clip
        assert max(abs(seen[0][k] - seen[-1][k]) for k in LABELS) > 1e-3
        whole = Client(rest_url=server.rest_url, model="stream")
        # serving_default takes 4 frames: the stream after the first 4 equals it
        probs = whole.predict({"frames": np.array([frames[:4]], dtype=object)})[
            "probabilities"][0]
        np.testing.assert_allclose([seen[3][k] for k in LABELS], probs, atol=1e-5)
        session_id = session.session
    status, doc = _call(server, "POST", f"{STREAMS_PATH}/{session_id}", frames[0],
                        "image/jpeg")
    assert status == 404 and "Unknown stream session" in doc["error"]  # closed on exit
    assert _call(server, "GET", STREAMS_PATH)[1]["sessions"] == 0


def test_the_stream_api_refuses_bad_input_and_keeps_other_sessions(server, frames):
    path = STREAMS_PATH
    status, doc = _call(server, "POST", path, json.dumps({"model_name": "stream"}).encode())
    assert status == 201 and doc["labels"] == LABELS and doc["model_version"] == 1
    good = f"{path}/{doc['session']}"
    for body, ctype, words in [
        (b"not a jpeg", "image/jpeg", "JPEG"),  # the in-graph decoder's error
        (b"{", "application/json", "JSON Parse error"),
        (json.dumps({"frames": []}).encode(), "application/json", "at least one frame"),
        (json.dumps({"frames": [{"b64": "%%%"}]}).encode(), "application/json", "base64"),
        (json.dumps({"frames": ["x"]}).encode(), "application/json", "frames[0]"),
    ]:
        status, doc = _call(server, "POST", good, body, ctype)
        assert 400 <= status < 500 and words.lower() in doc["error"].lower(), (body, doc)
    for body, status_want, words in [
        ({"model_name": "clip", "window": 257}, 400, "at most 256 frames"),
        ({"model_name": "clip", "stride": 0}, 400, "stride"),
        ({"model_name": "clip", "window": "8"}, 400, "window"),
        ({"model_name": "stream", "stride": 2}, 400, "apply to window models"),
        ({"model_name": "nope"}, 404, "nope"),
        ({"model_name": "stream", "top_k": 0}, 400, "top_k"),
        ({}, 400, "model_name"),
    ]:
        status, doc = _call(server, "POST", path, json.dumps(body).encode())
        assert status == status_want and words in doc["error"], (body, doc)
    assert _call(server, "PUT", good, b"{}")[0] == 405
    assert _call(server, "POST", f"{path}/unknown", frames[0], "image/jpeg")[0] == 404
    # a client that vanishes mid-body: its connection ends, the session still answers
    with socket.create_connection(("127.0.0.1", server.rest_port)) as s:
        s.sendall(f"POST {good} HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                  f"Content-Length: 5000\r\n\r\n".encode() + frames[0][:100])
    status, doc = _call(server, "POST", good, frames[0], "image/jpeg")
    assert status == 200 and doc["frames"] == 1  # the bad requests changed nothing
    assert _call(server, "DELETE", good)[0] == 200
    assert _call(server, "DELETE", good)[0] == 404


def test_session_limits_rate_cap_and_idle_timeout(stream_base, toy_versions, frames):
    from kvid.serving.streams import StreamLimits

    srv = _start(stream_base, toy_versions, grpc_port=None, max_decoded_pixels=2000,
                 stream_limits=StreamLimits(max_sessions=2, idle_timeout_s=1.5, max_fps=0.2))
    try:
        open_body = json.dumps({"model_name": "stream"}).encode()
        ids = [_call(srv, "POST", STREAMS_PATH, open_body)[1]["session"] for _ in range(2)]
        status, doc = _call(srv, "POST", STREAMS_PATH, open_body)
        assert status == 503 and "--stream_sessions" in doc["error"]
        first = f"{STREAMS_PATH}/{ids[0]}"
        three = json.dumps({"frames": [{"b64": base64.b64encode(f).decode()}
                                       for f in frames[:3]]}).encode()
        status, doc = _call(srv, "POST", first, three)
        assert status == 429 and "at most 1 frames" in doc["error"]
        from kvid.video.frames import encode_jpeg

        big = encode_jpeg(np.zeros((64, 64, 3), np.uint8))  # 4096 pixels > 2000
        status, doc = _call(srv, "POST", first, big, "image/jpeg")
        assert status == 400 and "--max_decoded_pixels" in doc["error"]
        status, doc = _call(srv, "POST", first, frames[0], "image/jpeg")
        assert status == 200 and doc["frames"] == 1  # the refused frames were not counted
        status, doc = _call(srv, "POST", first, frames[1], "image/jpeg")
        assert status == 429 and "--stream_max_fps" in doc["error"]  # 1 frame per 5 s
        deadline = time.monotonic() + 10
        while len(srv.streams) and time.monotonic() < deadline:  # the reaper drops both
            time.sleep(0.2)
        assert len(srv.streams) == 0
        status, doc = _call(srv, "POST", first, frames[0], "image/jpeg")
        assert status == 404 and "expired" in doc["error"]
        assert _call(srv, "POST", STREAMS_PATH, open_body)[0] == 201  # room again
    finally:
        srv.stop()


def test_a_second_step_on_a_busy_session_is_refused(server, frames):
    from kvid.serving.errors import ServingError

    opened = server.streams.open("stream")
    session = server.streams._sessions[opened["session"]]
    with session.lock:  # a step in progress
        with pytest.raises(ServingError, match="running a step") as e:
            server.streams.step(opened["session"], [frames[0]])
    assert e.value.http_status == 409
    assert server.streams.step(opened["session"], [frames[0]])["frames"] == 1
    server.streams.close(opened["session"])


def test_serve_flags_turn_the_stream_api_off_and_check_numbers(stream_base, toy_versions):
    from kvid.cliargs import OneLineParser
    from kvid.serving.flags import configure_serve_parser

    parser = configure_serve_parser(OneLineParser(prog="kvid serve"))
    args = parser.parse_args(["--model_base_path", "x", "--stream_sessions", "0"])
    assert args.stream_sessions == 0 and args.stream_max_fps == 60.0
    for bad in (["--stream_max_fps", "0"], ["--stream_idle_timeout_s", "nan"],
                ["--stream_sessions", "-1"]):
        with pytest.raises(SystemExit) as e:
            parser.parse_args(["--model_base_path", "x", *bad])
        assert e.value.code == 2
    srv = _start(stream_base, toy_versions, grpc_port=None, stream_limits=None)
    try:
        assert srv.streams is None
        assert http_request(srv.rest_port, "GET", STREAMS_PATH)[0] == 404
    finally:
        srv.stop()


def test_kvid_predict_stream_plays_a_video_through_a_session_or_carried_states(
        server, tmp_path, capsys):
    import argparse

    from kvid.serving.client import configure_predict_parser, predict_command
    from kvid.video.encode import write_video

    def run(argv):
        return predict_command(configure_predict_parser(
            argparse.ArgumentParser()).parse_args(argv))

    rng = np.random.default_rng(5)
    video = str(tmp_path / "v.mp4")  # 1.5 s at 10 fps
    write_video(video, (rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(15)),
                fps=10)
    timelines = {}
    for how, flags in (("session", ["--server", server.rest_url]),
                       ("carried", ["--grpc", server.grpc_target, "--no-realtime"])):
        out = tmp_path / f"{how}.json"
        start = time.monotonic()
        assert run([video, "--model", "stream", "--stream", "--top-k", "3",
                    "--timeline", str(out), *flags]) == 0
        took = time.monotonic() - start
        if how == "session":  # played at the video's rate: never ahead of it
            assert took >= 1.4
        printed = capsys.readouterr()
        windows = json.loads(out.read_text())["windows"]
        assert len(windows) == 15
        assert [round(w["start"], 3) for w in windows[:3]] == [0.0, 0.1, 0.2]
        changes = [line.split() for line in printed.out.splitlines() if "s  " in line]
        assert changes[0][0] == "0.00s" and len(changes) >= 1
        for t, _, label in changes:  # each line: where the top label became this one
            w = next(w for w in windows if abs(w["start"] - float(t[:-1])) < 1e-6)
            assert w["labels"][0] == label
        final = [line.split() for line in printed.out.splitlines()[-3:]]
        assert [lab for _, lab in final] == windows[-1]["labels"]
        assert "p50" in printed.err and "15 frames" in printed.err
        timelines[how] = windows
    for a, b in zip(timelines["session"], timelines["carried"]):
        assert a["labels"] == b["labels"]
        np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-5)
    assert run([video, "--model", "stream", "--stream", "--sliding-window", "1",
                "--server", server.rest_url]) == 1
    assert "apply to window models" in capsys.readouterr().err  # the server's 400
    assert run([video, "--model", "stream", "--stream", "--stride", "1",
                "--grpc", server.grpc_target]) == 1
    assert "apply to window models" in capsys.readouterr().err  # the client's own check


def _probs_top(probs, k):
    """The toy model's top-k (its labels: the ones it returns with its own top-k)."""
    from kvid.serving.testing import TOY_LABELS

    order = np.argsort(-probs, kind="stable")[:k]
    return [TOY_LABELS[c] for c in order], probs[order]


def test_a_window_model_streams_the_clips_of_its_windows(server):
    """The toy clip model (T = 16, no stream signatures): the session holds the last
    frames; each window it completes is the clip serving_default gets for those frames,
    through the session, a client-side ring over REST and one over gRPC."""
    from kvid.serving.client import Client
    from kvid.serving.errors import ServingError
    from kvid.serving.streams import _preprocessing, _windows
    from kvid.serving.testing import toy_clip

    clip = toy_clip(20, seed=4)
    rest = Client(rest_url=server.rest_url, model="clip")
    whole = rest.predict({"frames": np.array([clip[0:16], clip[2:18], clip[4:20],
                                              clip[2:18]], dtype=object)})["probabilities"]
    assert np.abs(whole[0] - whole[2]).max() > 1e-4  # the windows differ
    grpc = Client(grpc_target=server.grpc_target, model="clip")
    streams = [rest.open_stream(top_k=3, window=16, stride=2),
               rest.open_stream(top_k=3, window=16, stride=2, carry=True),
               grpc.open_stream(top_k=3, window=16, stride=2)]
    assert [type(s).__name__ for s in streams] == ["SessionStream", "WindowStream",
                                                   "WindowStream"]
    assert _call(server, "GET", STREAMS_PATH)[1]["models"] == ["stream", "clip"]
    for stream in streams:
        assert stream.window == 16
        got = []
        for i in range(18):  # a frame at a time, then the last two in one request
            top = stream.send([clip[i]])
            assert (top == []) == (i < 15) and len(stream.windows) == (i in (15, 17))
            got += stream.windows
        stream.send(clip[18:20])
        got += stream.windows
        assert [(a, b) for a, b, _ in got] == [(0, 16), (2, 18), (4, 20)]
        for (_, _, top), probs in zip(got, whole):
            labels, scores = _probs_top(probs, 3)
            assert [lab for lab, _ in top] == labels
            np.testing.assert_allclose([s for _, s in top], scores, atol=1e-5)
        stream.close()
    # a window longer than the clip: the centred clip, as --sliding-window takes it
    status, doc = _call(server, "POST", STREAMS_PATH, json.dumps(
        {"model_name": "clip", "window": 20, "stride": 20, "top_k": 2}).encode())
    assert status == 201 and (doc["mode"], doc["window"], doc["stride"]) == ("window", 20, 20)
    path = f"{STREAMS_PATH}/{doc['session']}"
    b64 = [{"b64": base64.b64encode(f).decode()} for f in clip]
    status, bad = _call(server, "POST", path, json.dumps(
        {"frames": b64[:3] + [{"b64": base64.b64encode(b"no image").decode()}]}).encode())
    assert status == 400 and "frames[3] is not a JPEG" in bad["error"]
    status, doc = _call(server, "POST", path, json.dumps({"frames": b64}).encode())
    assert status == 200 and doc["frames"] == 20  # the refused request added nothing
    assert [(w["start"], w["end"]) for w in doc["windows"]] == [(0, 20)]
    labels, scores = _probs_top(whole[3], 2)
    assert [t["label"] for t in doc["top_k"]] == labels
    np.testing.assert_allclose([t["score"] for t in doc["top_k"]], scores, atol=1e-5)
    assert _call(server, "DELETE", path)[0] == 200
    # only RGB JPEG clips stream: a flow model's windows are --sliding-window's
    servable = server.manager.get("clip")
    with pytest.raises(ServingError, match="--sliding-window") as e:
        _windows(servable, {**_preprocessing(servable), "modality": "flow"}, None, None)
    assert e.value.http_status == 400


def test_kvid_predict_stream_of_a_window_model_gives_the_sliding_window_timeline(
        server, tmp_path, capsys):
    import argparse

    from kvid.serving.client import configure_predict_parser, predict_command
    from kvid.video.encode import write_video

    def run(argv):
        return predict_command(configure_predict_parser(
            argparse.ArgumentParser()).parse_args(argv))

    rng = np.random.default_rng(6)
    video = str(tmp_path / "v.mp4")  # 4 s at 10 fps: windows of 16 frames every 8
    write_video(video, (rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(40)),
                fps=10)
    window = ["--sliding-window", "1.6", "--stride", "0.8", "--top-k", "3"]
    timelines = {}
    for how, flags in (("file", ["--server", server.rest_url]),
                       ("session", ["--stream", "--no-realtime", "--server", server.rest_url]),
                       ("grpc", ["--stream", "--no-realtime", "--grpc", server.grpc_target])):
        out = tmp_path / f"{how}.json"
        assert run([video, "--model", "clip", *window, "--timeline", str(out), *flags]) == 0
        timelines[how] = json.loads(out.read_text())["windows"]
        printed = capsys.readouterr()
        if how != "file":
            assert "a window of 16 frames" in printed.err and "40 frames" in printed.err
    assert [(w["start"], w["end"]) for w in timelines["file"]] == [
        (pytest.approx(s), pytest.approx(s + 1.6)) for s in (0.0, 0.8, 1.6, 2.4)]
    for how in ("session", "grpc"):
        assert len(timelines[how]) == 4
        for a, b in zip(timelines["file"], timelines[how]):
            assert (a["start"], a["end"], a["labels"]) == (
                pytest.approx(b["start"]), pytest.approx(b["end"]), b["labels"])
            np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-5)
    short = str(tmp_path / "short.mp4")
    write_video(short, (rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(8)),
                fps=10)
    assert run([short, "--model", "clip", "--stream", "--no-realtime",
                "--server", server.rest_url]) == 1
    assert "fewer than one window of 16" in capsys.readouterr().err


def test_the_rate_cap_is_a_token_bucket_of_one_second(server, frames):
    """On a test clock: a steady stream at the cap always passes, twice the cap is cut to
    the cap, and the idle timeout counts from the last frame."""
    from kvid.serving.errors import ServingError
    from kvid.serving.streams import StreamLimits, StreamSessions

    now = [0.0]
    sessions = StreamSessions(server.manager, StreamLimits(4, idle_timeout_s=60, max_fps=10),
                              clock=lambda: now[0])
    sid = sessions.open("stream")["session"]
    assert sessions.step(sid, frames[:1] * 10)["frames"] == 10  # a second's worth at once
    now[0] += 0.05
    with pytest.raises(ServingError, match="over its frame rate cap") as e:
        sessions.step(sid, frames[:1])  # half a frame's worth of time
    assert e.value.http_status == 429
    now[0] += 0.05
    assert sessions.step(sid, frames[:1])["frames"] == 11  # the refused one cost nothing
    for _ in range(30):  # exactly at the cap: never refused
        now[0] += 0.1
        sessions.step(sid, frames[:1])
    sent = refused = 0
    for _ in range(40):  # twice the cap for 2 s: about the cap gets through
        now[0] += 0.05
        try:
            sessions.step(sid, frames[:1])
            sent += 1
        except ServingError:
            refused += 1
    assert 19 <= sent <= 21 and sent + refused == 40
    now[0] += 59
    assert sessions.expire() == []
    now[0] += 2
    assert sessions.expire() == [sid]
    with pytest.raises(ServingError, match="expired after 60 s"):
        sessions.step(sid, frames[:1])


def test_kvid_predict_camera_streams_a_live_source_until_its_duration(server, tmp_path,
                                                                       capsys):
    """A live FFmpeg source paced in real time (lavfi's test pattern through its
    ``realtime`` filter, as a camera delivers frames): the stream model gets its frames
    at most at its 10 fps and stops at --duration; a window model over the same source
    gets whole windows."""
    import argparse

    from kvid.serving.client import configure_predict_parser, predict_command

    def run(argv):
        return predict_command(configure_predict_parser(
            argparse.ArgumentParser()).parse_args(argv))

    camera = "lavfi:testsrc2=size=64x48:rate=10,realtime"
    out = tmp_path / "live.json"
    start = time.monotonic()
    assert run(["--camera", camera, "--duration", "2", "--model", "stream", "--top-k", "2",
                "--timeline", str(out), "--server", server.rest_url]) == 0
    took = time.monotonic() - start
    printed = capsys.readouterr()
    doc = json.loads(out.read_text())
    rows = doc["windows"]
    assert doc["video"] == f"camera {camera}" and 1.9 <= took < 10
    starts = [r["start"] for r in rows]
    # at most the model's 10 fps (less its jitter), frames skipped while a step is slow
    # (a session's first one warms up), and never behind: the last within a frame of 2 s
    assert 8 <= len(rows) <= 21 and min(np.diff(starts)) > 0.07  # (0 and 2 s: 21)
    assert starts[0] == 0 and 1.8 <= starts[-1] < 2.0
    assert f"{len(rows)} frames" in printed.err and len(rows[-1]["labels"]) == 2
    out = tmp_path / "live_window.json"
    assert run(["--camera", camera, "--duration", "3", "--model", "clip", "--fps", "10",
                "--sliding-window", "1", "--stride", "0.5", "--timeline", str(out),
                "--server", server.rest_url]) == 0
    windows = json.loads(out.read_text())["windows"]
    assert len(windows) >= 2 and all(abs(w["end"] - w["start"] - 1.0) < 1e-6
                                     for w in windows)
    assert "a window of 10 frames" in capsys.readouterr().err
