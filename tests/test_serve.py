"""mnistlab.serve: the JSON API and the page, against a real uvicorn server on loopback.

The stand-in run is a small forest trained on ten synthetic shapes (a ring for "0", a
vertical bar for "1", ...), so that a drawn vertical line must come back as "1" through the
whole pipeline: image bytes -> decoding -> `prepare_image` -> model -> JSON. Hostile input
goes through real sockets, since strict HTTP parsing is part of what is tested.
"""

import base64
import http.client
import io
import json
import os
import re
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mnistlab.runs
from mnistlab.cli import main
from mnistlab.prepare import prepare_image
from mnistlab.serve import MAX_BODY_BYTES, Limits, RequestError, image_from_json, make_server

from shapes import CLASS_NAMES, draw_shape


def start(run_dir, limits=Limits()):
    server = make_server(run_dir, port=0, limits=limits)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def stop(server, thread):
    server.shutdown(timeout=10)
    server.server_close()
    thread.join(10)


@pytest.fixture(scope="module")
def server(shapes_run):
    """A server with the default limits on a free loopback port, in a background thread."""
    server, thread = start(shapes_run)
    yield server
    stop(server, thread)


# Short deadlines and few slots, to reach every limit within a test's time.
QUICK_LIMITS = Limits(body_idle_seconds=0.5, body_total_seconds=2.0, head_timeout_seconds=2.0,
                      max_connections=6, max_concurrent_predictions=1, slot_wait_seconds=0.3)


@pytest.fixture
def quick_server(shapes_run):
    server, thread = start(shapes_run, QUICK_LIMITS)
    yield server
    stop(server, thread)


def digit_png(kind: int = 1, size: int = 200, ink_dark: bool = True, fmt: str = "PNG",
              seed: int = 0) -> bytes:
    """A larger drawing of a shape, dark ink on white paper by default, as file bytes."""
    image = draw_shape(kind, np.random.default_rng(seed), size)
    if ink_dark:
        image = Image.eval(image, lambda value: 255 - value)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, fmt)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def declared_png(width: int, height: int, bit_depth: int = 16) -> bytes:
    """A PNG whose header declares a grey image of any size, with almost no pixel data:
    decoding it would fail as truncated, so a refusal for its size proves nothing was
    decoded."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(b"\0" * 100)) + png_chunk(b"IEND", b""))


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "mnistlab-boundary"):
    """(body, content type) of a form with parts (name, filename or None, content)."""
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename
                                                     else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        body += content + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def request(server, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None, connection=None):
    """Send one request; return (status, headers, decoded JSON or raw bytes)."""
    connection = connection or http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    data = response.read()
    if response.getheader("Content-Type", "").startswith("application/json"):
        data = json.loads(data)
    return response.status, response.headers, data


def predict(server, body: bytes, content_type: str = "image/png"):
    return request(server, "POST", "/api/predict", body, {"Content-Type": content_type})


def exchange(server, raw: bytes, timeout: float = 10) -> tuple[int | None, bytes]:
    """Send raw bytes, read until the server answers one response or closes; return
    (status or None, body)."""
    with socket.create_connection(server.server_address[:2], timeout=timeout) as connection:
        try:
            connection.sendall(raw)
        except OSError:
            pass  # the server may answer and close before taking all of it
        received = read_response(connection)
    if not received.startswith(b"HTTP/1.1 "):
        return None, received
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def read_response(connection: socket.socket) -> bytes:
    """Read one response (head and Content-Length body), or what comes before a close."""
    received = b""
    while True:
        try:
            chunk = connection.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return received
        if not chunk:
            return received
        received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        if length and len(body) >= int(length.group(1)):
            return received


def assert_json_error(body: bytes) -> str:
    document = json.loads(body)
    assert set(document) == {"error"} and document["error"]
    return document["error"]


# --- predictions -------------------------------------------------------------------------------


def test_png_of_a_vertical_line_is_a_one(server):
    png = digit_png(1)
    status, headers, answer = predict(server, png)
    assert status == 200, answer
    assert headers["Cache-Control"] == "no-store"
    assert answer["label"] == "one" and answer["prediction"] == 1
    assert len(answer["probabilities"]) == 10
    assert sum(answer["probabilities"]) == pytest.approx(1.0, abs=1e-4)
    assert answer["top"][0] == {"label": "one", "probability": max(answer["probabilities"])}
    assert [item["probability"] for item in answer["top"]] == sorted(
        (item["probability"] for item in answer["top"]), reverse=True)
    # The preview is exactly what the model was given.
    expected = prepare_image(Image.open(io.BytesIO(png)))
    np.testing.assert_array_equal(np.array(answer["input"], dtype=np.uint8), expected)


@pytest.mark.parametrize("kind", [0, 1, 3, 5])
def test_either_polarity_and_jpeg_give_the_shape(server, kind):
    for body, content_type in [(digit_png(kind, ink_dark=False), "image/png"),
                               (digit_png(kind, fmt="JPEG"), "image/jpeg")]:
        status, _, answer = predict(server, body, content_type)
        assert status == 200, answer
        assert answer["prediction"] == kind


def test_a_16_bit_png_is_read(server):
    image = np.asarray(Image.open(io.BytesIO(digit_png(1))).convert("L"), dtype=np.uint16) * 257
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")  # mode I;16
    status, _, answer = predict(server, buffer.getvalue())
    assert status == 200 and answer["label"] == "one"


def test_a_large_image_is_shrunk_and_still_read(server):
    image = Image.open(io.BytesIO(digit_png(1, size=2800))).convert("L")  # over 2000 a side
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    status, _, answer = predict(server, buffer.getvalue())
    assert status == 200 and answer["label"] == "one"


def test_json_data_url_as_the_page_sends_it(server):
    data_url = "data:image/png;base64," + base64.b64encode(digit_png(0)).decode()
    status, _, answer = predict(server, json.dumps({"image": data_url}).encode(),
                                "application/json")
    assert status == 200 and answer["label"] == "zero"
    # Plain base64 without the data: prefix is accepted too.
    plain = json.dumps({"image": base64.b64encode(digit_png(1)).decode()}).encode()
    status, _, answer = predict(server, plain, "application/json")
    assert status == 200 and answer["label"] == "one"


def test_multipart_form_field_image(server):
    body, content_type = multipart([("note", None, b"hi"), ("image", "digit.png", digit_png(1))])
    status, _, answer = predict(server, body, content_type)
    assert status == 200 and answer["label"] == "one"
    # A text field holding a data URL works too.
    data_url = b"data:image/png;base64," + base64.b64encode(digit_png(0))
    body, content_type = multipart([("image", None, data_url)])
    status, _, answer = predict(server, body, content_type)
    assert status == 200 and answer["label"] == "zero"


def test_a_chunked_upload_is_read(server):
    png = digit_png(1)
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(png[i:i + 1000]), png[i:i + 1000])
                       for i in range(0, len(png), 1000)) + b"0\r\n\r\n"
    status, body = exchange(server, b"POST /api/predict HTTP/1.1\r\nHost: x\r\n"
                                    b"Content-Type: image/png\r\nTransfer-Encoding: chunked\r\n"
                                    b"Connection: close\r\n\r\n" + chunked)
    assert status == 200 and json.loads(body)["label"] == "one"


def test_twenty_concurrent_requests_all_get_their_own_answer(server):
    bodies = [digit_png(kind % 10, seed=kind) for kind in range(20)]
    expected = [predict(server, body)[2]["probabilities"] for body in bodies]
    answers = [None] * 20
    barrier = threading.Barrier(20)

    def worker(index):
        barrier.wait()
        answers[index] = predict(server, bodies[index])

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for index, (status, _, answer) in enumerate(answers):
        assert status == 200
        assert answer["probabilities"] == expected[index]


# --- refused bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize("body, content_type, fragment", [
    (b'{"image": ', "application/json", "not valid JSON"),
    (b'["a list"]', "application/json", "field 'image'"),
    (b'{"image": 42}', "application/json", "must be a string"),
    (b'{"image": "data:image/png;base64,@@@not base64@@@"}', "application/json", "base64"),
    (b'{"image": "data:image/png,rawtext"}', "application/json", "base64"),
    (b"this is not an image at all", "image/png", "not an image"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "image/png", "not an image"),
    (b"", "image/png", "empty body"),
    (b"--x\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\n1\r\n--x--\r\n",
     "multipart/form-data; boundary=x", "no field 'image'"),
    (b"--x\r\n\r\n", "multipart/form-data", "multipart form cannot be read"),
])
def test_bad_bodies_are_400_with_a_message(server, body, content_type, fragment):
    status, _, answer = predict(server, body, content_type)
    assert status == 400
    assert fragment in answer["error"]


def test_truncated_image_is_400(server):
    png = digit_png(1)
    status, _, answer = predict(server, png[:len(png) // 2])
    assert status == 400 and "error" in answer


def test_image_without_ink_is_422(server):
    buffer = io.BytesIO()
    Image.new("RGB", (120, 120), "white").save(buffer, "PNG")
    status, _, answer = predict(server, buffer.getvalue())
    assert status == 422
    assert "no ink" in answer["error"]


def test_oversized_body_is_413_and_the_connection_stays_usable(server):
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    status, _, answer = request(server, "POST", "/api/predict", b"\0" * (MAX_BODY_BYTES + 1),
                                {"Content-Type": "image/png"}, connection)
    assert status == 413 and "limit" in answer["error"]
    status, _, answer = request(server, "GET", "/api/info", connection=connection)
    assert status == 200


def test_an_oversized_chunked_body_is_413(server):
    chunk = b"\0" * 65536
    body = (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * (MAX_BODY_BYTES // len(chunk) + 2)
    status, answer = exchange(server, b"POST /api/predict HTTP/1.1\r\nHost: x\r\n"
                                      b"Transfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n")
    assert status == 413 and "limit" in assert_json_error(answer)


@pytest.mark.parametrize("bit_depth", [1, 8, 16])
def test_an_image_declaring_too_many_pixels_is_refused_before_decoding(server, bit_depth):
    status, _, answer = predict(server, declared_png(5000, 5000, bit_depth))
    assert status == 413 and "5000x5000 pixels" in answer["error"]
    # Under the limit, the same file is decoded, and found truncated.
    status, _, answer = predict(server, declared_png(3000, 3000, bit_depth))
    assert status == 400 and "cannot be decoded" in answer["error"]


def test_too_many_form_parts_are_400(server):
    body, content_type = multipart([(f"field{index}", None, b"1") for index in range(17)]
                                   + [("image", "digit.png", digit_png(1))])
    status, _, answer = predict(server, body, content_type)
    assert status == 400 and "Too many fields" in answer["error"]
    body, content_type = multipart([("image", f"{index}.png", b"x") for index in range(5)])
    status, _, answer = predict(server, body, content_type)
    assert status == 400 and "Too many files" in answer["error"]


@pytest.mark.slow  # builds and sends a 3.5 MB body of 60,000 parts: about 17 s here
def test_sixty_thousand_form_parts_are_refused(server):
    body, content_type = multipart([(f"f{index}", None, b"") for index in range(60_000)])
    assert len(body) > 3_000_000
    status, _, answer = predict(server, body, content_type)
    assert status in (400, 413) and "Too many fields" in answer["error"]


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"image": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                                  b'{"a": [' + b"0," * 200_000 + b"0]}"])
def test_deeply_nested_or_sprawling_json_is_400(server, body):
    status, _, answer = predict(server, body, "application/json")
    assert status == 400 and "nested too deeply or has too many items" in answer["error"]


def test_json_over_the_recursion_limit_is_400_even_without_the_structure_check():
    with pytest.raises(RequestError, match="nested too deeply") as error:
        image_from_json(b"[" * 100_000 + b"]" * 100_000, Limits(max_json_items=10**9))
    assert error.value.status == 400


# --- HTTP that is malformed, strange or hostile --------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    (b"BREW /api/predict HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"TRACE /api/info HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"OPTIONS /api/predict HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n", 404),
    (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400),
    (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
    (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 7_147\r\n\r\n", 400),
    (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
     400),
    (b"POST /api/predict HTTP/1.1\r\nHost: x\r\n\r\n", 411),
    # Heads over the limit: 400 from h11 when they arrive in pieces, 431 when in one read.
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", (400, 431)),
    (b"GET /api/info HTTP/1.1\r\nHost: x\r\n" + b"X-Padding: " + b"p" * 20_000 + b"\r\n\r\n",
     (400, 431)),
    (b"GET /api/info HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(3000)) + b"\r\n",
     (400, 431)),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\x00\x20", 400),
    (b"\x00\xff garbage \x16\x03\x01\r\n\r\n", 400),
    (b"GET /api/info HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
])
def test_malformed_http_is_answered_in_json(server, raw, expected):
    status, body = exchange(server, raw)
    assert status in (expected if isinstance(expected, tuple) else (expected,))
    assert_json_error(body)
    assert request(server, "GET", "/api/info")[0] == 200


def test_a_head_arriving_in_pieces_over_the_limit_is_400(server):
    with socket.create_connection(server.server_address[:2], timeout=10) as connection:
        connection.sendall(b"GET /api/info HTTP/1.1\r\nHost: x\r\n")
        for _ in range(40):
            connection.sendall(b"X-Padding: " + b"p" * 1000 + b"\r\n")
            if select.select([connection], [], [], 0.02)[0]:
                break  # answered: the server reads no more
        answer = read_response(connection)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert_json_error(answer.partition(b"\r\n\r\n")[2])


def test_http_9_9_is_answered_as_http_1_1(server):
    status, body = exchange(server, b"GET /api/info HTTP/9.9\r\nHost: x\r\n\r\n")
    assert status == 200 and json.loads(body)["model"] == "random-forest"


def test_page_info_favicon_docs_404_and_405(server, shapes_run):
    status, headers, page = request(server, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'id="pad"' in page and b"touch-action: none" in page
    assert b"http://" not in page and b"https://" not in page  # nothing fetched from outside
    assert b'rel="icon"' in page
    status, headers, _ = request(server, "HEAD", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    status, _, info = request(server, "GET", "/api/info")
    assert status == 200
    assert info["class_names"] == list(CLASS_NAMES)
    assert info["model"] == "random-forest" and info["run"] == shapes_run.name
    assert info["max_body_bytes"] == MAX_BODY_BYTES
    status, headers, icon = request(server, "GET", "/favicon.ico")
    assert status == 200 and headers["Content-Type"] == "image/svg+xml" and b"<svg" in icon
    assert request(server, "GET", "/favicon.svg")[0] == 200
    status, headers, docs = request(server, "GET", "/docs")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"swagger" in docs.lower()
    status, _, schema = request(server, "GET", "/openapi.json")
    assert status == 200 and {"/api/predict", "/api/info"} <= set(schema["paths"])
    assert "multipart/form-data" in schema["paths"]["/api/predict"]["post"]["requestBody"][
        "content"]
    status, _, answer = request(server, "GET", "/nowhere")
    assert status == 404 and "no such path: /nowhere" in answer["error"]
    status, _, answer = request(server, "GET", "/api/info/")
    assert status == 404 and "error" in answer  # no redirect
    status, headers, answer = request(server, "GET", "/api/predict")
    assert status == 405 and headers["Allow"] == "POST"
    assert answer == {"error": "/api/predict answers POST, not GET"}
    status, headers, answer = request(server, "POST", "/", b"x")
    assert status == 405 and headers["Allow"] == "GET, HEAD" and "error" in answer
    assert request(server, "DELETE", "/api/info")[0] == 405


def test_keep_alive_survives_refused_requests_with_bodies(server):
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    assert request(server, "POST", "/nowhere", b"x" * 1000, connection=connection)[0] == 404
    assert request(server, "PUT", "/api/info", b"y" * 1000, connection=connection)[0] == 405
    body, content_type = multipart([(f"f{index}", None, b"") for index in range(20_000)])
    assert request(server, "POST", "/api/predict", body,
                   {"Content-Type": content_type}, connection)[0] == 400
    status, _, answer = request(server, "POST", "/api/predict", digit_png(1),
                                {"Content-Type": "image/png"}, connection)
    assert status == 200 and answer["label"] == "one"


def test_an_unexpected_error_is_500_and_the_server_goes_on(server, monkeypatch, caplog):
    def broken(image):
        raise RuntimeError("model exploded")

    monkeypatch.setattr(server.predictor, "predict", broken)
    status, _, answer = predict(server, digit_png(1))
    assert status == 500 and answer == {"error": "internal error: RuntimeError"}
    lines = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert len(lines) == 1 and "model exploded" in lines[0]  # logged in one line, not sent
    monkeypatch.undo()
    assert predict(server, digit_png(1))[0] == 200


def test_server_still_serves_after_everything_else(server):
    # Runs last of the tests on this server: after all the bad requests, a good one works.
    assert request(server, "GET", "/api/info")[0] == 200
    assert predict(server, digit_png(1))[2]["label"] == "one"


# --- deadlines and slots (a server with short limits) ---------------------------------------


def test_a_body_that_stalls_is_408(quick_server):
    start = time.perf_counter()
    status, body = exchange(quick_server, b"POST /api/predict HTTP/1.1\r\nHost: x\r\n"
                                          b"Content-Length: 1000\r\n\r\nonly this much")
    assert status == 408 and "did not arrive in time" in assert_json_error(body)
    assert time.perf_counter() - start < QUICK_LIMITS.body_idle_seconds + 5


def test_a_body_that_trickles_is_408(quick_server):
    with socket.create_connection(quick_server.server_address[:2], timeout=10) as connection:
        connection.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        answer = b""
        for _ in range(40):  # a byte every 0.1 s: never idle long, but too slow in all
            try:
                connection.sendall(b"x")
            except OSError:
                break
            time.sleep(0.1)
            connection.setblocking(False)
            try:
                answer += connection.recv(4096)
            except BlockingIOError:
                pass
            connection.setblocking(True)
            if answer:
                break
    assert answer.startswith(b"HTTP/1.1 408 ")


def test_a_connection_that_sends_no_request_is_closed(quick_server):
    with socket.create_connection(quick_server.server_address[:2], timeout=10) as connection:
        start = time.perf_counter()
        connection.sendall(b"GET /api/in")  # a head that never ends
        assert connection.recv(100) == b""
        assert time.perf_counter() - start < QUICK_LIMITS.head_timeout_seconds + 5
    # And after an answer, a kept-alive connection gets the same deadline.
    with socket.create_connection(quick_server.server_address[:2], timeout=10) as connection:
        connection.sendall(b"GET /api/info HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(connection).startswith(b"HTTP/1.1 200 ")
        connection.sendall(b"G")
        assert connection.recv(100) == b""


def test_too_many_connections_are_503_json(quick_server):
    idle = [socket.create_connection(quick_server.server_address[:2])
            for _ in range(QUICK_LIMITS.max_connections)]
    try:
        time.sleep(0.2)
        status, headers, answer = request(quick_server, "GET", "/api/info")
        assert status == 503 and "busy" in answer["error"] and headers["Retry-After"] == "1"
    finally:
        for connection in idle:
            connection.close()
    time.sleep(0.2)
    assert request(quick_server, "GET", "/api/info")[0] == 200


def test_a_request_without_a_free_slot_is_503_json(quick_server, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    predict_now = quick_server.predictor.predict

    def slow(image):
        entered.set()
        release.wait(10)
        return predict_now(image)

    monkeypatch.setattr(quick_server.predictor, "predict", slow)
    first = {}
    thread = threading.Thread(target=lambda: first.update(answer=predict(quick_server,
                                                                         digit_png(1))))
    thread.start()
    assert entered.wait(10)  # the first request now holds the only slot
    status, headers, answer = predict(quick_server, digit_png(1))
    release.set()
    thread.join(10)
    assert status == 503 and "busy" in answer["error"] and headers["Retry-After"] == "1"
    assert first["answer"][0] == 200


# --- the command line -------------------------------------------------------------------------


def test_cli_refuses_a_missing_or_non_run_directory(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "missing")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("mnistlab: error:") and error.count("\n") == 1
    assert main(["serve", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_cli_reports_a_port_in_use_before_loading_the_model(shapes_run, capsys, monkeypatch):
    def must_not_load(run_dir):
        raise AssertionError("the model was loaded before the port was checked")

    monkeypatch.setattr(mnistlab.runs, "load_model", must_not_load)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(shapes_run), "--port", str(port)]) == 2
    error = capsys.readouterr().err
    assert "port is in use" in error and error.count("\n") == 1


def test_cli_help_has_an_example_and_explains_every_argument(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "mnistlab serve runs/" in text and "--port" in text and "--access-log" in text
    assert re.search(r"RUN_DIR\s+a completed run directory", text)


def test_cli_serves_until_interrupted(shapes_run):
    process = subprocess.Popen([sys.executable, "-m", "mnistlab", "serve", str(shapes_run),
                                "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        url = re.search(r"at (http://\S+)", process.stdout.readline()).group(1)
        host, port = re.match(r"http://([\d.]+):(\d+)/", url).groups()
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.request("GET", "/api/info")
        assert connection.getresponse().status == 200
        connection.close()
        process.send_signal(2)  # Ctrl-C
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0 and "stopped" in out
    # Quiet by default: no access log, no uvicorn start or stop messages.
    assert "/api/info" not in err and "server process" not in err and "Uvicorn" not in err


# --- a soak ------------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1))


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_soak_with_hostile_clients(shapes_run):
    """A minute of valid, garbage, oversized and slow clients at once: every valid request is
    answered 200, nothing is answered 5xx except 503, and the server's memory stays put."""
    duration = float(os.environ.get("MNISTLAB_SOAK_SECONDS", "60"))
    process = subprocess.Popen([sys.executable, "-m", "mnistlab", "serve", str(shapes_run),
                                "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    try:
        url = re.search(r"at (http://\S+)", process.stdout.readline()).group(1)
        address = re.match(r"http://([\d.]+):(\d+)/", url).groups()
        address = (address[0], int(address[1]))
        report = run_soak(address, process.pid, duration)
    finally:
        process.send_signal(2)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
    latencies = np.array(report["latencies"]) * 1000
    growth_mib = (report["rss_end"] - report["rss_start"]) / 1024
    print(f"\nsoak {duration:g} s: {len(latencies)} valid requests, p50 "
          f"{np.percentile(latencies, 50):.0f} ms, p99 {np.percentile(latencies, 99):.0f} ms, "
          f"max {latencies.max():.0f} ms; {report['hostile']} hostile requests "
          f"{dict(sorted(report['hostile_statuses'].items()))}; RSS "
          f"{report['rss_start'] / 1024:.0f} -> {report['rss_end'] / 1024:.0f} MiB "
          f"(peak {report['rss_peak'] / 1024:.0f} MiB)")
    assert report["valid_errors"] == []
    assert len(latencies) > 100
    assert not [status for status in report["hostile_statuses"]
                if status is None or (status >= 500 and status != 503)]
    assert growth_mib < 100


def run_soak(address, pid: int, duration: float) -> dict:
    """Clients in threads until `duration` is over; what they saw, and the server's RSS."""
    png, jpeg = digit_png(1), digit_png(3, fmt="JPEG")
    data_url = json.dumps({"image": "data:image/png;base64," + base64.b64encode(png).decode()})
    form, form_type = multipart([("image", "digit.png", png)])
    many_parts, many_parts_type = multipart([(f"f{index}", None, b"") for index in range(60_000)])
    valid = [(png, "image/png"), (jpeg, "image/jpeg"), (data_url.encode(), "application/json"),
             (form, form_type)]
    garbage = [(os.urandom(5000), "image/png"), (b"[" * 100_000, "application/json"),
               (many_parts, many_parts_type), (declared_png(5000, 5000), "image/png"),
               (png[:len(png) // 2], "image/png"), (b'{"image": "@@"}', "application/json")]
    raw_garbage = [b"GET /api/info HTTP/9.9\r\nHost: x\r\n\r\n",
                   b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32),
                   b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                   b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n"]
    deadline = time.monotonic() + duration
    lock = threading.Lock()
    report = {"latencies": [], "valid_errors": [], "hostile": 0, "hostile_statuses": {}}

    def note(status):
        with lock:
            report["hostile"] += 1
            report["hostile_statuses"][status] = report["hostile_statuses"].get(status, 0) + 1

    def post(connection, body, content_type):
        connection.request("POST", "/api/predict", body=body, headers={"Content-Type":
                                                                        content_type})
        response = connection.getresponse()
        return response.status, response.read()

    def valid_client(index):
        connection = http.client.HTTPConnection(*address, timeout=30)
        count = index
        while time.monotonic() < deadline:
            body, content_type = valid[count % len(valid)]
            count += 1
            start = time.perf_counter()
            try:
                status, answer = post(connection, body, content_type)
            except (OSError, http.client.HTTPException) as error:
                status, answer = None, repr(error).encode()
                connection = http.client.HTTPConnection(*address, timeout=30)
            with lock:
                if status == 200:
                    report["latencies"].append(time.perf_counter() - start)
                else:
                    report["valid_errors"].append((status, answer[:200]))

    def garbage_client(index):
        count = index
        while time.monotonic() < deadline:
            connection = http.client.HTTPConnection(*address, timeout=30)
            body, content_type = garbage[count % len(garbage)]
            count += 1
            try:
                note(post(connection, body, content_type)[0])
            except (OSError, http.client.HTTPException):
                note(None)
            connection.close()

    def oversized_client(index):
        big = b"\0" * (MAX_BODY_BYTES + 1)
        while time.monotonic() < deadline:
            connection = http.client.HTTPConnection(*address, timeout=30)
            try:
                note(post(connection, big, "image/png")[0])
            except (OSError, http.client.HTTPException):
                note(None)
            connection.close()

    def raw_client(index):
        count = index
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(address, timeout=10) as connection:
                    connection.sendall(raw_garbage[count % len(raw_garbage)])
                    answer = connection.recv(100)
                note(int(answer.split(b" ")[1]) if answer.startswith(b"HTTP/1.1 ") else None)
            except OSError:
                note(None)
            count += 1
            time.sleep(0.05)

    def slow_client(index):
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(address, timeout=15) as connection:
                    connection.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\n"
                                       b"Content-Type: image/png\r\nContent-Length: 100000\r\n\r\n")
                    stop_at = min(deadline, time.monotonic() + 3)
                    while time.monotonic() < stop_at:
                        connection.sendall(b"x" * 10)
                        time.sleep(0.2)
            except OSError:
                pass

    clients = ([threading.Thread(target=valid_client, args=(i,)) for i in range(6)]
               + [threading.Thread(target=garbage_client, args=(i,)) for i in range(3)]
               + [threading.Thread(target=oversized_client, args=(i,)) for i in range(2)]
               + [threading.Thread(target=raw_client, args=(i,)) for i in range(2)]
               + [threading.Thread(target=slow_client, args=(i,)) for i in range(3)])
    # Warm up (the first requests import and allocate what every later one reuses).
    warm = http.client.HTTPConnection(*address, timeout=30)
    for body, content_type in valid * 3 + garbage:
        post(warm, body, content_type)
        warm = http.client.HTTPConnection(*address, timeout=30)
    report["rss_start"] = report["rss_peak"] = rss_kib(pid)
    for client in clients:
        client.start()
    while time.monotonic() < deadline:
        report["rss_peak"] = max(report["rss_peak"], rss_kib(pid))
        time.sleep(0.5)
    for client in clients:
        client.join(60)
    report["rss_end"] = rss_kib(pid)
    return report
