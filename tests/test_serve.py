"""mnistlab.serve: the JSON API and the page, against a real server on a free loopback port.

The stand-in run is a small forest trained on ten synthetic shapes (a ring for "0", a
vertical bar for "1", ...), so that a drawn vertical line must come back as "1" through the
whole pipeline: image bytes -> decoding -> `prepare_image` -> model -> JSON.
"""

import base64
import http.client
import io
import json
import socket
import threading

import numpy as np
import pytest
from PIL import Image

from mnistlab.cli import main
from mnistlab.prepare import prepare_image
from mnistlab.serve import MAX_BODY_BYTES, make_server
from shapes import CLASS_NAMES, draw_shape

@pytest.fixture(scope="module")
def server(shapes_run):
    """A server on a free loopback port, serving in a background thread."""
    server = make_server(shapes_run, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def digit_png(kind: int = 1, size: int = 200, ink_dark: bool = True, fmt: str = "PNG",
              seed: int = 0) -> bytes:
    """A larger drawing of a shape, dark ink on white paper by default, as file bytes."""
    image = draw_shape(kind, np.random.default_rng(seed), size)
    if ink_dark:
        image = Image.eval(image, lambda value: 255 - value)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, fmt)
    return buffer.getvalue()


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


def test_png_of_a_vertical_line_is_a_one(server):
    png = digit_png(1)
    status, headers, answer = predict(server, png)
    assert status == 200, answer
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
    boundary = "----mnistlab-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            f"filename=\"digit.png\"\r\nContent-Type: image/png\r\n\r\n").encode()
    body += digit_png(1) + f"\r\n--{boundary}--\r\n".encode()
    status, _, answer = predict(server, body, f"multipart/form-data; boundary={boundary}")
    assert status == 200 and answer["label"] == "one"


@pytest.mark.parametrize("body, content_type, fragment", [
    (b'{"image": ', "application/json", "not valid JSON"),
    (b'["a list"]', "application/json", "field 'image'"),
    (b'{"image": 42}', "application/json", "must be a string"),
    (b'{"image": "data:image/png;base64,@@@not base64@@@"}', "application/json", "base64"),
    (b'{"image": "data:image/png,rawtext"}', "application/json", "base64"),
    (b"this is not an image at all", "image/png", "not an image"),
    (b"", "image/png", "empty body"),
    (b"--x\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\n1\r\n--x--\r\n",
     "multipart/form-data; boundary=x", "no field 'image'"),
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


@pytest.mark.parametrize("raw, expected", [
    (b"BREW /api/predict HTTP/1.1\r\nHost: x\r\n\r\n", b" 501 "),
    (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", b" 400 "),
    (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", b" 400 "),
    (b"POST /api/predict HTTP/1.1\r\nHost: x\r\n\r\n", b" 411 "),
    (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n", b" 411 "),
])
def test_malformed_http_is_refused(server, raw, expected):
    with socket.create_connection(server.server_address[:2], timeout=10) as connection:
        connection.sendall(raw)
        answer = connection.recv(4096)
    assert answer.startswith(b"HTTP/") and expected in answer.split(b"\r\n")[0]


def test_garbage_bytes_only_close_the_connection(server):
    with socket.create_connection(server.server_address[:2], timeout=10) as connection:
        connection.sendall(b"\x00\xff garbage \x16\x03\x01\r\n\r\n")
        connection.recv(4096)
    assert request(server, "GET", "/api/info")[0] == 200


def test_image_with_too_many_pixels_is_refused(server):
    buffer = io.BytesIO()
    Image.new("1", (6000, 6000), 1).save(buffer, "PNG")  # tiny file, 36 million pixels
    status, _, answer = predict(server, buffer.getvalue())
    assert status == 413 and "pixels" in answer["error"]


def test_page_info_404_and_405(server, shapes_run):
    status, headers, page = request(server, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'id="pad"' in page and b"touch-action: none" in page
    assert b"http://" not in page and b"https://" not in page  # nothing fetched from outside
    status, _, info = request(server, "GET", "/api/info")
    assert status == 200
    assert info["class_names"] == list(CLASS_NAMES)
    assert info["model"] == "random-forest" and info["run"] == shapes_run.name
    status, _, answer = request(server, "GET", "/favicon.ico")
    assert status == 404 and "no such path" in answer["error"]
    status, headers, answer = request(server, "GET", "/api/predict")
    assert status == 405 and headers["Allow"] == "POST" and "error" in answer
    assert request(server, "POST", "/", b"x")[0] == 405
    assert request(server, "DELETE", "/api/info")[0] == 405


def test_keep_alive_survives_refused_requests_with_bodies(server):
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    assert request(server, "POST", "/nowhere", b"x" * 1000, connection=connection)[0] == 404
    assert request(server, "PUT", "/api/info", b"y" * 1000, connection=connection)[0] == 405
    status, _, answer = request(server, "POST", "/api/predict", digit_png(1),
                                {"Content-Type": "image/png"}, connection)
    assert status == 200 and answer["label"] == "one"


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


def test_an_unexpected_error_is_500_and_the_server_goes_on(server, monkeypatch, caplog):
    def broken(image):
        raise RuntimeError("model exploded")

    monkeypatch.setattr(server.predictor, "predict", broken)
    status, _, answer = predict(server, digit_png(1))
    assert status == 500 and answer == {"error": "internal error: RuntimeError"}
    assert "model exploded" in caplog.text  # logged, not sent to the client
    monkeypatch.undo()
    assert predict(server, digit_png(1))[0] == 200


def test_server_still_serves_after_everything_else(server):
    # Runs last in this module: after all the bad requests above, a good one still works.
    assert request(server, "GET", "/api/info")[0] == 200
    assert predict(server, digit_png(1))[2]["label"] == "one"


def test_cli_refuses_a_missing_or_non_run_directory(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "missing")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("mnistlab: error:") and error.count("\n") == 1
    assert main(["serve", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_cli_reports_a_port_in_use(shapes_run, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(shapes_run), "--port", str(port)]) == 2
    error = capsys.readouterr().err
    assert "port is in use" in error and error.count("\n") == 1


def test_cli_help_has_an_example(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "mnistlab serve runs/" in text and "--port" in text
