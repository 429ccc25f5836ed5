"""`python -m mnist_pipeline serve`: the real server on a free port of 127.0.0.1.

The model is the pipeline's default (linear, the notebook's settings) trained on the embedded
sample and exported as the train stage exports it. The page is driven in headless Chromium
(Playwright pointed at Debian's ``chromium``): a digit drawn stroke by stroke with mouse
events gets the top 3 from the server, as the server answers the same drawing. Bad uploads
get a 4xx with one line of JSON, and the server answers the next request. A bounded load
test (1,000 requests, 16 at a time; `benchmarks/bench_serve.py` prints its figures) gets no
error.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, git_env
from mnist_pipeline.data.params import DataParams
from mnist_pipeline.data.sources import IDX_FILES, fetch
from mnist_pipeline.data.splits import read_raw_split
from mnist_pipeline.learning.export import to_onnx
from mnist_pipeline.learning.params import TrainParams
from mnist_pipeline.learning.training import train
from mnist_pipeline.serving.app import MAX_UPLOAD_BYTES
from mnist_pipeline.serving.loadtest import load_test
from test_predict import as_photo, png_claiming, truncated_png

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = os.environ.get("CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    """(ONNX model, its eval.json, a test image ``[784]`` of a 1)."""
    root = tmp_path_factory.mktemp("serve")
    manifest = fetch(DataParams(source="embedded"), root / "raw")
    train_split, test_split = (
        read_raw_split(root / "raw", *IDX_FILES[split], manifest) for split in ("train", "test")
    )
    params = TrainParams()
    result = train(params, train_split, test_split)
    onnx_model = root / "model.onnx"
    onnx_model.write_bytes(
        to_onnx(result.model, result.spec, params.output, train_split.classes, "mnist")
    )
    (root / "eval.json").write_text(json.dumps({"accuracy": 0.875, "loss": 0.2}))
    one = test_split.images[int(np.flatnonzero(test_split.labels == 1)[0])]
    return onnx_model, root / "eval.json", one


@pytest.fixture(scope="module")
def server(model: tuple[Path, Path, np.ndarray]) -> Iterator[str]:
    """The base URL of a running ``serve`` (port 0: the OS picks a free one)."""
    command = [sys.executable, "-m", "mnist_pipeline", "serve", "--port", "0"]
    process = subprocess.Popen(
        [*command, "--model", str(model[0]), "--metrics", str(model[1])],
        env={**git_env(), "PYTHONPATH": str(REPO / "src")},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()  # "serving linear (mnist) on http://127.0.0.1:PORT/ ..."
        assert " on http://127.0.0.1:" in line, line
        yield line.split(" on ")[1].split()[0].rstrip("/")
    finally:
        process.terminate()
        process.wait(timeout=30)


def post(url: str, body: bytes, content_type: str | None = "image/png") -> tuple[int, dict]:
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(f"{url}/predict", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def post_oversized(url: str, length: int) -> tuple[int, dict]:
    """A request declaring ``length`` bytes of PNG, of which only the first 64 KiB are sent
    before the answer is read (a client sending all of it may see the connection reset
    before it reads the answer: the server does not read what it refuses)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(
            f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\n"
            f"Content-Length: {length}\r\n\r\n".encode()
            + bytes(64 * 1024)
        )
        reply = conn.makefile("rb")
        status = int(reply.readline().split()[1])
        headers = {}
        while (line := reply.readline().strip()) != b"":
            name, _, value = line.decode().partition(":")
            headers[name.lower()] = value.strip()
        return status, json.loads(reply.read(int(headers["content-length"])))


def png_of(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_health_names_the_model_dataset_and_accuracy(server: str) -> None:
    with urllib.request.urlopen(f"{server}/health", timeout=30) as reply:
        health = json.loads(reply.read())
    assert health == {
        "status": "ok",
        "model": "linear",
        "dataset": "mnist",
        "accuracy": 0.875,
        "classes": [str(d) for d in range(10)],
    }


def test_predict_answers_an_upload_raw_or_as_a_form(
    server: str, model: tuple[Path, Path, np.ndarray]
) -> None:
    png = png_of(as_photo(model[2]))
    status, answer = post(server, png)
    assert status == 200 and answer["predicted"] == "1"
    assert answer["top"][0]["class"] == "1" and len(answer["top"]) == 3
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    boundary = "xyzzy"
    form = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="one.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + png
        + f"\r\n--{boundary}--\r\n".encode()
    )
    assert post(server, form, f"multipart/form-data; boundary={boundary}") == (200, answer)


BAD_UPLOADS = {  # name: (body, content type, status, words of the error)
    "over the size limit": (b"", "image/png", 413, "larger than"),  # post_oversized
    "not an image": (b"hello, world\n", "image/png", 415, "not a PNG or JPEG"),
    "decompression bomb": (png_claiming(20000, 20000), "image/png", 413, "larger than the"),
    "wrong content type": (b"{}", "application/json", 415, "content type application/json"),
    "url-encoded form": (b"a=1", "application/x-www-form-urlencoded", 415, "not accepted"),
    "truncated image": (truncated_png(), "image/png", 400, "cannot decode"),
    "blank image": (png_of(Image.new("L", (64, 64), 255)), "image/png", 422, "blank image"),
    "form without a file": (b"--b--\r\n", "multipart/form-data; boundary=b", 400, "one image"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_upload_is_a_4xx_with_one_line_and_serving_goes_on(
    case: str, server: str, model: tuple[Path, Path, np.ndarray]
) -> None:
    body, content_type, status, words = BAD_UPLOADS[case]
    if case == "over the size limit":
        got, answer = post_oversized(server, MAX_UPLOAD_BYTES + 1)
    else:
        got, answer = post(server, body, content_type)
    assert got == status and list(answer) == ["error"], (got, answer)
    assert words in answer["error"] and "\n" not in answer["error"]
    assert post(server, png_of(as_photo(model[2])))[0] == 200  # still serving


def test_load_1000_requests_16_at_a_time_without_error(
    server: str, model: tuple[Path, Path, np.ndarray]
) -> None:
    result = load_test(server, png_of(as_photo(model[2])), requests=1000, concurrency=16)
    assert result.errors == 0 and len(result.latencies) == 1000


def draw_one(page: object) -> None:
    """A '1' with a serif and a base, drawn stroke by stroke with the mouse."""
    box = page.locator("#pad").bounding_box()  # type: ignore[attr-defined]
    strokes = [[(110, 80), (140, 50)], [(140, 50), (140, 230)], [(105, 230), (175, 230)]]
    for stroke in strokes:
        (x0, y0), (x1, y1) = stroke
        page.mouse.move(box["x"] + x0, box["y"] + y0)  # type: ignore[attr-defined]
        page.mouse.down()  # type: ignore[attr-defined]
        page.mouse.move(box["x"] + x1, box["y"] + y1, steps=12)  # type: ignore[attr-defined]
        page.mouse.up()  # type: ignore[attr-defined]


@pytest.mark.skipif(
    BROWSER is None,
    reason="no headless browser: install Debian's chromium (apt-get install chromium) "
    "or set CHROMIUM=/path/to/chrome; .ci/run installs it where it can",
)
def test_page_draws_a_digit_and_shows_the_top_3(server: str, tmp_path: Path) -> None:
    """The page works offline: every request other than the server's own is refused."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=BROWSER,
            headless=True,
            args=[*CHROMIUM_FLAGS, "--proxy-server=127.0.0.1:9"],
        )
        try:
            page = browser.new_context(viewport={"width": 800, "height": 600}).new_page()
            foreign = []
            page.on("request", lambda r: r.url.startswith(server) or foreign.append(r.url))
            page.goto(f"{server}/")
            page.wait_for_function("document.getElementById('classes').textContent !== ''")
            assert page.locator("#classes").inner_text() == " · ".join(map(str, range(10)))
            assert (
                "linear model trained on mnist (test accuracy 87.5%)"
                in page.locator("#model").inner_text()
            )
            draw_one(page)
            page.wait_for_function("document.getElementById('pad').dataset.state === 'answered'")
            rows = page.evaluate(
                "[...document.querySelectorAll('#top li')].map(li => "
                "[li.querySelector('.name').textContent, li.querySelector('.p').textContent])"
            )
            page.screenshot(path=str(tmp_path / "drawn.png"))
            drawing = base64.b64decode(
                page.evaluate("document.getElementById('pad').toDataURL('image/png')")[22:]
            )
            assert foreign == []
        finally:
            browser.close()
    status, answer = post(server, drawing)  # the server's answer for the final drawing
    assert status == 200 and answer["predicted"] == "1"
    assert [tuple(row) for row in rows] == [
        (e["class"], f"{e['probability']:.1%}") for e in answer["top"]
    ]
