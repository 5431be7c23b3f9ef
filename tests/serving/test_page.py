"""kvid serve's live page in a real headless Chromium (Debian's, driven by Playwright): the
webcam (Chromium's fake camera playing a synthetic .y4m) and a dropped video file are
classified frame by frame through the stream session API; screenshots are saved."""

from __future__ import annotations

import base64
import json
import os
import shutil

import numpy as np
import pytest
from serving_fixtures import STREAM_LABELS, http_request, start_stream_server

from kvid.serving.contract import STREAMS_PATH

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("CI"):  # CI installs it (.ci/run): never skip there
    raise RuntimeError("chromium is not installed (.ci/run installs Debian's package)")
if CHROMIUM is None:
    pytest.skip("needs Debian's chromium (apt-get install chromium)", allow_module_level=True)


def _moving_square(n: int, h: int = 96, w: int = 128) -> list[np.ndarray]:
    frames = []
    for i in range(n):
        f = np.full((h, w, 3), 40, np.uint8)
        x = (i * 6) % (w - 24)
        f[30:54, x:x + 24] = (230, 200, 40)
        frames.append(f)
    return frames


def _write_y4m(path: str, frames: list[np.ndarray], fps: int) -> None:
    """YUV4MPEG2 (4:2:0), what Chromium's fake camera plays in a loop."""
    import cv2

    h, w = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            f.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())


@pytest.fixture(scope="module")
def served(stream_base, toy_versions):
    srv = start_stream_server(stream_base, toy_versions, grpc_port=None)
    yield srv
    srv.stop()


def _browser(playwright, camera_file: str):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--autoplay-policy=no-user-gesture-required",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={camera_file}"])


def _sessions(srv) -> int:
    return json.loads(http_request(srv.rest_port, "GET", STREAMS_PATH)[2])["sessions"]


def test_the_page_labels_the_webcam_and_a_dropped_video(served, tmp_path):
    from playwright.sync_api import sync_playwright

    from kvid.video.encode import write_video

    camera = str(tmp_path / "camera.y4m")
    _write_y4m(camera, _moving_square(30), fps=10)
    video = str(tmp_path / "dropped.webm")  # VP8: what every Chromium build plays
    write_video(video, _moving_square(30), fps=10, codec="libvpx", pix_fmt="yuv420p")
    shots = os.environ.get("KVID_SCREENSHOT_DIR", str(tmp_path))
    with sync_playwright() as p:
        browser = _browser(p, camera)
        page = browser.new_page(viewport={"width": 1000, "height": 620})
        console = []
        page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
        failed = []  # every request the page made that the server refused
        page.on("response", lambda r: failed.append((r.status, r.url)) if r.status >= 400
                else None)
        page.goto(served.rest_url + "/")
        page.wait_for_function("window.kvid.model !== null", timeout=20_000)
        assert page.inner_text("#model") == "model: stream"

        # the webcam: the fake camera's frames are labelled live
        page.click("#camera")
        page.wait_for_function("window.kvid.timeline.length >= 8", timeout=60_000)
        state = page.evaluate("window.kvid")
        assert state["fps"] == 10 and state["labels"] == STREAM_LABELS
        assert all(p_["label"] in STREAM_LABELS and 0 < p_["score"] <= 1
                   for p_ in state["timeline"])
        frames = [p_["frames"] for p_ in state["timeline"]]
        assert frames == list(range(1, len(frames) + 1))  # one step per frame, in order
        top = page.locator("#topk li").all_inner_texts()
        assert len(top) == 3 and all(t.split()[0] in STREAM_LABELS for t in top)
        assert "ms" in page.inner_text("#latency")
        assert _sessions(served) == 1
        page.screenshot(path=os.path.join(shots, "page_webcam.png"), full_page=True)
        page.click("#stop")
        page.wait_for_function("window.kvid.done && window.kvid.session === null")
        assert _sessions(served) == 0  # stopping closed the session on the server

        # a dropped file: played to its end, a timeline under it, the session closed
        data = base64.b64encode(open(video, "rb").read()).decode()
        page.evaluate("""(data) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], "dropped.webm", {type: "video/webm"}));
            document.getElementById("drop").dispatchEvent(
                new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
        }""", data)
        page.wait_for_function("window.kvid.done && window.kvid.source === 'file'",
                               timeout=60_000)
        state = page.evaluate("window.kvid")
        times = [p_["t"] for p_ in state["timeline"]]
        assert len(times) >= 10, state  # a 3 s video at 10 fps, a few frames skipped at most
        assert times == sorted(times) and times[-1] > 2.0  # the whole video, in order
        assert "done" in page.inner_text("#status")
        page.screenshot(path=os.path.join(shots, "page_dropped_file.png"), full_page=True)
        # the timeline canvas was drawn in the labels' colours (not left blank)
        pixels = page.evaluate("""() => {
            const c = document.getElementById("timeline");
            const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            let painted = 0;
            for (let i = 3; i < d.length; i += 4) if (d[i] > 0) painted++;
            return painted / (c.width * c.height);
        }""")
        assert pixels > 0.5
        assert state["errors"] == [] and failed == [] and console == []
        browser.close()
    assert _sessions(served) == 0
    for name in ("page_webcam.png", "page_dropped_file.png"):
        with open(os.path.join(shots, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_the_page_is_served_at_the_root_and_off_with_the_flag(served, stream_base,
                                                              toy_versions):
    status, headers, body = http_request(served.rest_port, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"kvid live" in body and f'const API = "{STREAMS_PATH}"'.encode() in body
    assert served.page_url == served.rest_url + "/"
    srv = start_stream_server(stream_base, toy_versions, grpc_port=None, page=False)
    try:
        assert http_request(srv.rest_port, "GET", "/")[0] == 404 and srv.page_url is None
        assert http_request(srv.rest_port, "GET", STREAMS_PATH)[0] == 200  # the API stays
    finally:
        srv.stop()
