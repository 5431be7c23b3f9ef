"""Stream sessions of ``kvid serve``: a stream MoViNet classified frame by frame with its
states held by the server, equal to a client carrying the states through TF Serving's
own API (REST and gRPC) and to the whole clip; and the limits and bad input of the API."""

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
        ({"model_name": "clip"}, 400, "no stream_init signature"),
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
    assert run([video, "--model", "clip", "--stream", "--server", server.rest_url]) == 1
    assert "stream_init" in capsys.readouterr().err


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
