"""`serve`: the real server (uvicorn over real sockets) on a free port of 127.0.0.1, run in a
thread of the test process (`serving.serve.server`, the objects `serve` runs).

The model is the pipeline's default (linear, the notebook's settings) trained on the embedded
sample and exported as the train stage exports it. The page is driven in headless Chromium
(Playwright pointed at Debian's ``chromium``): a digit drawn stroke by stroke with mouse
events gets the top 3 from the server, as the server answers the same drawing, and a model
that is unsure of it says "not sure — is this a digit?"; ``/docs``
renders the API's operations with every request outside the server refused. Bad uploads get
a 4xx with one line of JSON, and the server answers the next request. Clients that do not
finish their request are dropped within ``REQUEST_SECONDS`` and do not keep others out.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_pipeline.data.params import DataParams
from mnist_pipeline.data.sources import IDX_FILES, fetch
from mnist_pipeline.data.splits import read_raw_split
from mnist_pipeline.learning.losses import Head
from mnist_pipeline.learning.model_file import to_onnx
from mnist_pipeline.learning.params import TrainParams
from mnist_pipeline.learning.training import train
from mnist_pipeline.serving import app as app_module
from mnist_pipeline.serving.app import MAX_UPLOAD_BYTES
from mnist_pipeline.serving.serve import REQUEST_SECONDS, main, server
from test_predict import as_photo, broken_jpegs, handmade_model, png_claiming, truncated_png

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = os.environ.get("CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
needs_browser = pytest.mark.skipif(
    BROWSER is None,
    reason="no headless browser: install Debian's chromium (apt-get install chromium) "
    "or set CHROMIUM=/path/to/chrome; .ci/run installs it where it can",
)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """(ONNX model, a test image ``[784]`` of a 1)."""
    root = tmp_path_factory.mktemp("serve")
    manifest = fetch(DataParams(source="embedded"), root / "raw")
    train_split, test_split = (
        read_raw_split(root / "raw", *IDX_FILES[split], manifest) for split in ("train", "test")
    )
    params = TrainParams()
    result = train(params, train_split, test_split)
    onnx_model = root / "model.onnx"
    onnx_model.write_bytes(
        to_onnx(result.model, result.spec, Head(params.output), train_split.classes, "mnist")
    )
    return onnx_model, test_split.images[int(np.flatnonzero(test_split.labels == 1)[0])]


def running(model: Path, host: str = "127.0.0.1") -> Iterator[str]:
    """The base URL of ``serve --model MODEL --host HOST --port 0`` running in a thread."""
    app, listener = server(model, host)
    thread = threading.Thread(target=app.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{listener.getsockname()[1]}"
    finally:
        app.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def url(model: tuple[Path, np.ndarray]) -> Iterator[str]:
    yield from running(model[0])


def request(
    url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict]:
    """``(status, JSON answer)`` of a GET (no body) or POST."""
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, body, headers or {}), timeout=30
        ) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def post(url: str, body: bytes, content_type: str | None = "image/png") -> tuple[int, dict]:
    return request(f"{url}/predict", body, {"Content-Type": content_type} if content_type else {})


def raw_reply(conn: socket.socket) -> tuple[int, dict]:
    """The status and JSON body of the HTTP answer on ``conn``."""
    reply = conn.makefile("rb")
    status = int(reply.readline().split()[1])
    headers = {}
    while (line := reply.readline().strip()) != b"":
        name, _, value = line.decode().partition(":")
        headers[name.lower()] = value.strip()
    return status, json.loads(reply.read(int(headers["content-length"])))


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
        return raw_reply(conn)


def post_chunked(url: str, length: int) -> tuple[int, dict]:
    """``length`` bytes of PNG sent in 64 KiB chunks, with no ``Content-Length``."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    chunks = (bytes(min(2**16, length - start)) for start in range(0, length, 2**16))
    conn.request("POST", "/predict", chunks, {"Content-Type": "image/png"}, encode_chunked=True)
    reply = conn.getresponse()
    return reply.status, json.loads(reply.read())


def png_of(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_health_reports_the_served_files_metadata(url: str) -> None:
    assert request(f"{url}/health") == (
        200,
        {"status": "ok", "model": "linear", "dataset": "mnist", "classes": list("0123456789")},
    )


def test_predict_answers_an_upload_raw_or_as_a_form(
    url: str, model: tuple[Path, np.ndarray]
) -> None:
    png = png_of(as_photo(model[1]))
    status, answer = post(url, png)
    assert status == 200 and answer["predicted"] == "1"
    assert answer["top"][0]["class"] == "1" and len(answer["top"]) == 3
    assert list(answer["probabilities"]) == list("0123456789")
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
    assert post(url, form, f"multipart/form-data; boundary={boundary}") == (200, answer)


@pytest.fixture(scope="module")
def unsure_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server over a model that gives every class 0.1, with a threshold of 0.5."""
    handmade_model(path := tmp_path_factory.mktemp("unsure") / "model.onnx", unsure_below="0.5")
    yield from running(path)


def test_below_its_threshold_the_model_answers_null_and_its_top_3(
    unsure_url: str, model: tuple[Path, np.ndarray]
) -> None:
    status, answer = post(unsure_url, png_of(as_photo(model[1])))
    assert status == 200 and answer["predicted"] is None
    assert answer["top"] == [{"class": c, "probability": 0.1} for c in "012"]
    assert answer["probabilities"] == dict.fromkeys("0123456789", 0.1)


def form_with(name: str, filename: str | None = "x.png", parts: int = 1) -> bytes:
    """A multipart body (boundary ``b``) with ``parts`` fields called ``name``: files when
    ``filename`` is given, else text."""
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    part = f"--b\r\nContent-Disposition: {disposition}\r\n\r\nabc\r\n"
    return (part * parts + "--b--\r\n").encode()


FORM = "multipart/form-data; boundary=b"
BAD_UPLOADS = {  # name: (body, content type, status, words of the error)
    "over the size limit": (b"", "image/png", 413, "larger than"),  # post_oversized
    "over the size limit, chunked": (b"", "image/png", 413, "larger than"),  # post_chunked
    "not an image": (b"hello, world\n", "image/png", 415, "not a PNG or JPEG"),
    "decompression bomb": (png_claiming(20000, 20000), "image/png", 413, "larger than the"),
    "4000x4000, 24 KB": (png_of(Image.new("L", (4000, 4000))), "image/png", 413, "4000×4000"),
    "wrong content type": (b"{}", "application/json", 415, "content type application/json"),
    "url-encoded form": (b"a=1", "application/x-www-form-urlencoded", 415, "not accepted"),
    "truncated image": (truncated_png(), "image/png", 400, "cannot decode"),
    **{
        name: (data, "image/jpeg", 400, "cannot decode")
        for name, data in broken_jpegs(Image.new("L", (64, 64), 128)).items()
    },
    "blank image": (png_of(Image.new("L", (64, 64), 255)), "image/png", 422, "blank image"),
    "form without a file": (b"--b--\r\n", FORM, 400, "one image"),
    "form with another field": (form_with("file"), FORM, 400, "form's file `image`"),
    "form with text as image": (form_with("image", None), FORM, 400, "form's file `image`"),
    "form with two files": (form_with("image", parts=2), FORM, 400, "Too many files"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_upload_is_a_4xx_with_one_line_and_serving_goes_on(
    case: str, url: str, model: tuple[Path, np.ndarray]
) -> None:
    body, content_type, status, words = BAD_UPLOADS[case]
    start = time.perf_counter()
    if case == "over the size limit":
        got, answer = post_oversized(url, MAX_UPLOAD_BYTES + 1)
    elif case == "over the size limit, chunked":
        got, answer = post_chunked(url, MAX_UPLOAD_BYTES + 1)
    else:
        got, answer = post(url, body, content_type)
    assert time.perf_counter() - start < 5  # a 4000×4000 PNG is refused from its header
    assert got == status and list(answer) == ["error"], (got, answer)
    assert words in answer["error"] and "\n" not in answer["error"]
    assert post(url, png_of(as_photo(model[1])))[0] == 200  # still serving


def test_out_of_memory_is_a_json_503(
    url: str, model: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_memory(data: bytes, where: str) -> np.ndarray:
        raise MemoryError

    monkeypatch.setattr(app_module, "decode_image", no_memory)
    status, answer = post(url, png_of(as_photo(model[1])))
    assert status == 503 and answer == {"error": "out of memory; try again or send a smaller image"}


def test_foreign_host_and_cross_origin_post_are_refused(
    url: str, model: tuple[Path, np.ndarray]
) -> None:
    """DNS rebinding (a foreign ``Host``) and a post from another site's page (its
    ``Origin``) are refused; the server's own page, and ``localhost``, are not."""
    png = png_of(as_photo(model[1]))
    port = url.rsplit(":", 1)[1]
    evil = {"Host": f"evil.example:{port}", "Content-Type": "image/png"}
    assert request(f"{url}/predict", png, evil) == (
        400,
        {"error": f"Host 'evil.example:{port}' is not this server"},
    )
    assert request(f"{url}/health", None, {"Host": "evil.example"})[0] == 400
    for origin, status in [
        ("http://evil.example", 403),
        ("null", 403),
        (f"http://127.0.0.1:{int(port) + 1}", 403),
        (url, 200),
    ]:
        headers = {"Origin": origin, "Content-Type": "image/png"}
        assert request(f"{url}/predict", png, headers)[0] == status, origin
    assert request(f"{url}/health", None, {"Host": f"localhost:{port}"})[0] == 200


def test_another_host_is_the_only_one_accepted_and_is_warned_about(
    model: tuple[Path, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    for base in running(model[0], "127.0.0.2"):  # not this machine's usual loopback name
        assert capsys.readouterr().err == (
            "warning: other machines can reach 127.0.0.2; anyone there can use it\n"
        )
        assert request(f"{base}/health")[0] == 200
        port = base.rsplit(":", 1)[1]
        assert request(f"{base}/health", None, {"Host": f"127.0.0.1:{port}"})[0] == 400


def open_slowly(url: str, body: bool) -> socket.socket:
    """A connection that sends part of a request (headers, or headers and part of the body)
    and waits."""
    host, port = url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=30)
    start = f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\n"
    conn.sendall(
        f"{start}Content-Length: 1000\r\n\r\n0123456789".encode() if body else start.encode()
    )
    return conn


def test_slow_clients_are_dropped_and_keep_nobody_out(
    url: str, model: tuple[Path, np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    """70 connections that send part of a request and wait: a normal client is answered at
    once, and each slow one is closed within ``REQUEST_SECONDS`` (an aborted upload logs one
    line, no traceback)."""
    start = time.perf_counter()
    slow = [open_slowly(url, body=i % 2 == 1) for i in range(70)]
    try:
        assert request(f"{url}/health")[0] == 200
        assert post(url, png_of(as_photo(model[1])))[0] == 200
        assert time.perf_counter() - start < REQUEST_SECONDS
        dropped = []
        for conn in slow:
            assert conn.recv(1) == b""  # closed by the server (the timeout is 30 s)
            dropped.append(time.perf_counter() - start)
    finally:
        for conn in slow:
            conn.close()
    print(f"70 slow clients dropped after {min(dropped):.2f}..{max(dropped):.2f} s")
    assert min(dropped) >= REQUEST_SECONDS and max(dropped) < REQUEST_SECONDS + 3
    assert request(f"{url}/health")[0] == 200
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_an_aborted_upload_logs_one_line(url: str, caplog: pytest.LogCaptureFixture) -> None:
    with open_slowly(url, body=True):
        time.sleep(0.5)  # closed with the upload under way
    for _ in range(100):  # the server notices within a few milliseconds
        if caplog.records:
            break
        time.sleep(0.05)
    assert [(r.levelno, r.getMessage(), r.exc_info) for r in caplog.records] == [
        (logging.WARNING, "a client left mid-upload", None)
    ]


def test_a_port_it_cannot_listen_on_is_one_line(
    url: str, model: tuple[Path, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    busy = url.rsplit(":", 1)[1]
    for port, reason in [("99999", "bind(): port must be 0-65535."), (busy, "[Errno 98] Address")]:
        assert main(["--port", port, "--model", str(model[0])]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: cannot listen on 127.0.0.1 port {port} ({reason}"), err
        assert err.endswith("; pass another --host or --port (0 picks a free one)\n"), err


@pytest.mark.parametrize("hostile", ["rows", "nan"])
def test_a_broken_model_stops_the_server_before_it_listens(
    hostile: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "hostile.onnx"
    handmade_model(path, double_rows=hostile == "rows", bias=0.0 if hostile == "rows" else np.nan)
    assert main(["--model", str(path), "--port", "0"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "rerun the train stage" in err, err


def test_load_1000_requests_16_at_a_time_without_error(
    url: str, model: tuple[Path, np.ndarray]
) -> None:
    png = png_of(as_photo(model[1]))
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda _: post(url, png)[0], range(1000)))
    assert statuses == [200] * 1000


def test_openapi_describes_predict_and_the_favicon_is_served(url: str) -> None:
    schema = request(f"{url}/openapi.json")[1]
    predict = schema["paths"]["/predict"]["post"]
    assert set(predict["requestBody"]["content"]) == {
        "multipart/form-data", "image/png", "image/jpeg"
    }  # fmt: skip
    answer = predict["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/Prediction"}
    fields = schema["components"]["schemas"]["Prediction"]["properties"]
    assert set(fields) == {"predicted", "top", "probabilities"}
    assert {"type": "null"} in fields["predicted"]["anyOf"]  # unsure
    assert set(predict["responses"]) == {"200", "400", "403", "413", "415", "422", "503"}
    with urllib.request.urlopen(f"{url}/favicon.ico", timeout=30) as reply:
        assert reply.headers["Content-Type"] == "image/vnd.microsoft.icon"
        assert reply.read(4) == b"\0\0\1\0"  # an ICO file


def browser_page(playwright: object, url: str, foreign: list[str]) -> object:
    """A headless Chromium page that may only reach ``url``: any other request is aborted
    and recorded in ``foreign``."""
    browser = playwright.chromium.launch(  # type: ignore[attr-defined]
        executable_path=BROWSER, headless=True, args=[*CHROMIUM_FLAGS, "--proxy-server=127.0.0.1:9"]
    )
    page = browser.new_context(viewport={"width": 1000, "height": 800}).new_page()

    def only_the_server(route: object) -> None:
        if route.request.url.startswith(url):  # type: ignore[attr-defined]
            route.continue_()  # type: ignore[attr-defined]
        else:
            foreign.append(route.request.url)  # type: ignore[attr-defined]
            route.abort()  # type: ignore[attr-defined]

    page.route("**/*", only_the_server)
    return page


@pytest.mark.slow  # a real browser: `make test`, not `make test-fast`
@needs_browser
def test_docs_render_offline(url: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    foreign: list[str] = []
    with sync_playwright() as playwright:
        page = browser_page(playwright, url, foreign)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{url}/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=30_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        page.screenshot(path=str(tmp_path / "docs.png"))
        page.context.browser.close()
    assert sorted(p.strip() for p in paths) == ["/health", "/predict"]
    assert foreign == [] and errors == []


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


@pytest.mark.slow  # a real browser: `make test`, not `make test-fast`
@needs_browser
def test_page_draws_a_digit_and_shows_the_top_3(url: str, tmp_path: Path) -> None:
    """The page works offline: every request other than the server's own is refused."""
    from playwright.sync_api import sync_playwright

    foreign: list[str] = []
    with sync_playwright() as playwright:
        page = browser_page(playwright, url, foreign)
        page.goto(f"{url}/")
        page.wait_for_function("document.getElementById('classes').textContent !== ''")
        assert page.locator("#classes").inner_text() == " · ".join(map(str, range(10)))
        assert page.locator("#model").inner_text() == "linear model trained on mnist"
        draw_one(page)
        page.wait_for_function("document.getElementById('pad').dataset.state === 'answered'")
        rows = page.evaluate(
            "[...document.querySelectorAll('#top li')].map(li => "
            "[li.querySelector('.name').textContent, li.querySelector('.p').textContent])"
        )
        said = page.locator("#status").inner_text()
        page.screenshot(path=str(tmp_path / "drawn.png"))
        drawing = base64.b64decode(
            page.evaluate("document.getElementById('pad').toDataURL('image/png')")[22:]
        )
        page.context.browser.close()
    assert foreign == []
    status, answer = post(url, drawing)  # the server's answer for the final drawing
    assert status == 200 and answer["predicted"] == "1" and answer["top"][0]["class"] == "1"
    assert said == ""  # sure of it: no "not sure" line
    assert [tuple(row) for row in rows] == [
        (e["class"], f"{e['probability']:.1%}") for e in answer["top"]
    ]


@pytest.mark.slow  # a real browser: `make test`, not `make test-fast`
@needs_browser
def test_page_says_not_sure_when_the_model_answers_null(unsure_url: str) -> None:
    from playwright.sync_api import sync_playwright

    foreign: list[str] = []
    with sync_playwright() as playwright:
        page = browser_page(playwright, unsure_url, foreign)
        page.goto(f"{unsure_url}/")
        page.wait_for_function("document.getElementById('classes').textContent !== ''")
        draw_one(page)
        page.wait_for_function("document.getElementById('pad').dataset.state === 'answered'")
        status = page.locator("#status").inner_text()
        guesses = page.locator("#top .name").all_inner_texts()
        page.context.browser.close()
    assert foreign == []
    assert status == "not sure — is this a digit?" and guesses == ["0", "1", "2"]
