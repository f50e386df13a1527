"""Nothing a client sends gets a 5xx: every bad input has its clear 4xx, and good odd inputs work."""

from __future__ import annotations

import base64
import io
import os
import re
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.conftest import DATA, upload
from tests.images import encode, png_declaring

SEVEN = (DATA / "7.png").read_bytes()


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("7.png", SEVEN)
    return buffer.getvalue()


REFUSED = {
    "empty": (b"", 415),
    "truncated": (SEVEN[: len(SEVEN) // 2], 415),
    "random bytes": (np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(), 415),
    "text": (b"hello, I am not a picture\n", 415),
    "pdf": (b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n", 415),
    "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><text>7</text></svg>', 415),
    "zip": (_zip(), 415),
    "eps": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\nshowpage\n", 415),
    "bomb": (png_declaring(20_000, 20_000), 413),
    "ico": (encode(Image.open(DATA / "7.png").convert("RGBA"), "ICO"), 415),
}

ACCEPTED = {
    "gif animation": encode(
        Image.fromarray(np.asarray(Image.open(DATA / "7.png"))),
        "GIF",
        save_all=True,
        append_images=[Image.new("L", (28, 28), 0)],
    ),
    "16-bit png": encode(Image.fromarray(np.asarray(Image.open(DATA / "7.png")).astype(np.uint16) * 257)),
    "cmyk jpeg": encode(Image.open(DATA / "7.png").convert("CMYK"), "JPEG", quality=95),
    "1x1": encode(Image.new("L", (1, 1), 255)),
    "1-bit": encode(Image.open(DATA / "7.png").convert("1")),
    # dark ink drawn on a transparent background (palette index 255, white, is transparent)
    "palette with transparency": encode(
        Image.fromarray(255 - np.asarray(Image.open(DATA / "7.png"))).convert("P"), transparency=255
    ),
    "heic": encode(Image.open(DATA / "7.png").convert("RGB"), "HEIF"),
    "avif": encode(Image.open(DATA / "7.png").convert("RGB"), "AVIF"),
    "huge flat": encode(Image.new("L", (4000, 3000), 255)),
    "16-bit giant": encode(Image.new("I;16", (6000, 4000), 30000)),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_bad_files_are_refused_with_their_status(client: TestClient, name: str) -> None:
    data, status = REFUSED[name]
    response = client.post("/predict?model=tiny", files=upload(data, f"{name}.bin"))
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and "Traceback" not in error["message"] and "/work" not in error["message"]


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_odd_but_valid_images_are_classified(client: TestClient, name: str) -> None:
    response = client.post("/predict?model=tiny", files=upload(ACCEPTED[name]))
    assert response.status_code == 200, response.text
    if name in ("gif animation", "16-bit png", "palette with transparency"):  # lossless: the same model input
        seven = client.post("/predict?model=tiny", files=upload(SEVEN)).json()
        assert response.json()["probabilities"] == seven["probabilities"]


def test_oversized_upload_is_refused_before_reading(client: TestClient) -> None:
    response = client.post("/predict?model=tiny", files=upload(os.urandom(11 * 1024 * 1024)))
    assert response.status_code == 413
    assert "MAX_UPLOAD_BYTES" in response.json()["error"]["message"]


def test_oversized_chunked_upload_is_refused_while_streaming(client: TestClient) -> None:
    def chunks():  # no Content-Length: the body arrives chunked
        for _ in range(12):
            yield b"x" * (1024 * 1024)

    response = client.post(
        "/predict?model=tiny", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("model=tiny&version=abc", 404),  # a version label that does not exist
        ("model=tiny&version=a%20b", 422),
        ("model=tiny&version=-1", 422),
        ("model=tiny&version=7", 404),
        ("model=tiny&top_k=0", 422),
        ("model=tiny&top_k=x", 422),
        ("model=tiny&preprocess=magic", 422),
        ("model=tiny&preprocess=cifar10", 400),  # makes 3 channels; the model takes 1
        ("model=../../etc/passwd", 422),
        ("model=fashion_mnist/tiny&dataset=mnist", 404),
        ("model=" + "a" * 500, 422),
    ],
)
def test_bad_parameters(client: TestClient, query: str, status: int) -> None:
    response = client.post(f"/predict?{query}", files=upload(SEVEN))
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"]


def test_extra_form_fields_are_refused(client: TestClient) -> None:
    response = client.post("/predict?model=tiny", files=upload(SEVEN), data={"colour": "blue"})
    assert response.status_code == 422
    assert "colour" in response.json()["error"]["message"]


def test_image_sent_as_text_field_is_refused(client: TestClient) -> None:
    response = client.post("/predict?model=tiny", data={"image": "7.png"}, files={"x": ("x", b"")})
    assert response.status_code == 422


def test_several_images_come_back_in_order(client: TestClient) -> None:
    paths = sorted((DATA / "mnist_test").glob("*.png"))[:5]
    files = [("image", (path.name, path.read_bytes(), "image/png")) for path in paths]
    response = client.post("/predict?model=tiny&top_k=2", files=files)
    body = response.json()
    assert response.status_code == 200
    alone = [client.post("/predict?model=tiny", files=upload(path)).json()["class_index"] for path in paths]
    assert [p["class_index"] for p in body["predictions"]] == alone
    assert all(len(p["top_k"]) == 2 for p in body["predictions"])


def test_one_bad_image_among_several_fails_the_request_cleanly(client: TestClient) -> None:
    files = [("image", ("a.png", SEVEN, "image/png")), ("image", ("b.txt", b"text", "text/plain"))]
    assert client.post("/predict?model=tiny", files=files).status_code == 415


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"image": base64.b64encode(SEVEN).decode()}, 200),
        ({"image": [base64.b64encode(SEVEN).decode()] * 2}, 200),
        ({"image": "%%%not base64%%%"}, 400),
        ({"image": 7}, 422),
        ({"image": []}, 422),
        ({"picture": "abc"}, 422),
        ({"image": base64.b64encode(SEVEN).decode(), "extra": 1}, 422),
        ([1, 2, 3], 422),
    ],
)
def test_json_base64_body(client: TestClient, body: object, status: int) -> None:
    response = client.post("/predict?model=tiny", json=body)
    assert response.status_code == status, response.text


def test_invalid_json_is_a_400(client: TestClient) -> None:
    response = client.post("/predict?model=tiny", content=b"{oops", headers={"content-type": "application/json"})
    assert response.status_code == 400


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_other_content_types_are_415(client: TestClient, content_type: str) -> None:
    response = client.post("/predict?model=tiny", content=SEVEN, headers={"content-type": content_type})
    assert response.status_code == 415
    assert "multipart/form-data" in response.json()["error"]["message"]
    assert "Content-Type image/png" in response.json()["error"]["message"]


@pytest.mark.parametrize("content_type", ["image/png", "image/jpeg", "application/octet-stream", None])
def test_image_file_as_the_body(client: TestClient, content_type: str | None) -> None:
    """The body itself is the file, whatever image type it declares (Pillow reads the bytes),
    or with no content type at all, as `requests.post(url, data=file)` sends it."""
    headers = {"content-type": content_type} if content_type else {}
    raw = client.post("/predict?model=tiny&top_k=3", content=SEVEN, headers=headers)
    assert raw.status_code == 200, raw.text
    multipart = client.post("/predict?model=tiny&top_k=3", files=upload(SEVEN)).json()
    assert raw.json() == multipart


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"", "image/png", 415),  # an empty file is not an image
        (b"", None, 422),  # nothing sent
        (b"hello, I am not a picture\n", "image/png", 415),
        (SEVEN[: len(SEVEN) // 2], "application/octet-stream", 415),
        (b"%PDF-1.7\n%%EOF\n", None, 415),
    ],
)
def test_bad_image_bodies_are_a_clear_4xx(
    client: TestClient, body: bytes, content_type: str | None, status: int
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/predict?model=tiny", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]


def test_oversized_image_body_is_refused_while_streaming(client: TestClient) -> None:
    def chunks():  # no Content-Length: the body arrives chunked
        for _ in range(12):
            yield b"x" * (1024 * 1024)

    response = client.post("/predict?model=tiny", content=chunks(), headers={"content-type": "image/png"})
    assert response.status_code == 413


def test_wrong_method_is_405(client: TestClient) -> None:
    response = client.get("/predict?model=tiny")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_client_request_id_is_echoed_and_garbage_replaced(client: TestClient) -> None:
    good = client.get("/healthz", headers={"x-request-id": "abc-123"})
    assert good.headers["x-request-id"] == "abc-123"
    bad = client.get("/healthz", headers={"x-request-id": "bad id\twith spaces"})
    assert bad.headers["x-request-id"] != "bad id\twith spaces"
    # The service's own: 32 hex digits, as uuid4().hex, a new one each request.
    made = {client.get("/healthz").headers["x-request-id"] for _ in range(50)} | {bad.headers["x-request-id"]}
    assert len(made) == 51 and all(re.fullmatch(r"[0-9a-f]{32}", request_id) for request_id in made)


def test_server_keeps_serving_after_bad_input(client: TestClient) -> None:
    for data, _ in REFUSED.values():
        client.post("/predict?model=tiny", files=upload(data))
    assert client.post("/predict?model=tiny", files=upload(SEVEN)).status_code == 200


def test_top_k_above_the_class_count_lists_every_class(client: TestClient) -> None:
    body = client.post("/predict?model=tiny&top_k=11", files=upload(SEVEN)).json()
    assert len(body["top_k"]) == 10
    assert [item["probability"] for item in body["top_k"]] == sorted(
        (item["probability"] for item in body["probabilities"]), reverse=True
    )


def _multipart(*parts: bytes, boundary: bytes = b"b0undary") -> bytes:
    return b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts) + b"--" + boundary + b"--\r\n"


IMAGE_PART = (
    b'Content-Disposition: form-data; name="image"; filename="7.png"\r\nContent-Type: image/png\r\n\r\n' + SEVEN
)


@pytest.mark.parametrize(
    ("content_type", "body", "status", "message"),
    [
        ("multipart/form-data", _multipart(IMAGE_PART), 400, "no boundary"),
        ("multipart/form-data; boundary=b0undary", b"--b0undary\r\nnot a header line", 400, "malformed multipart"),
        ("multipart/form-data; boundary=" + "b" * 300, _multipart(IMAGE_PART, boundary=b"b" * 300), 400, "Boundary"),
        (
            "multipart/form-data; boundary=b0undary",
            _multipart(b"Content-Disposition: form-data\r\n\r\n" + SEVEN),
            400,
            '"name"',
        ),
        ("multipart/form-data; boundary=b0undary", _multipart(*[IMAGE_PART] * 65), 400, "too many files"),
        (
            "multipart/form-data; boundary=b0undary",
            _multipart(*[b'Content-Disposition: form-data; name="f%d"\r\n\r\nx' % i for i in range(17)]),
            400,
            "too many form fields",
        ),
        ("multipart/form-data; boundary=b0undary", b"", 422, 'missing form field "image"'),
    ],
)
def test_malformed_multipart_is_a_clear_4xx(
    client: TestClient, content_type: str, body: bytes, status: int, message: str
) -> None:
    response = client.post("/predict?model=tiny", content=body, headers={"content-type": content_type})
    assert response.status_code == status, response.text
    assert message in response.json()["error"]["message"]


def test_multipart_split_anywhere_reads_the_same(client: TestClient) -> None:
    body = _multipart(IMAGE_PART, IMAGE_PART)
    whole = client.post(
        "/predict?model=tiny", content=body, headers={"content-type": "multipart/form-data; boundary=b0undary"}
    ).json()

    def trickle():  # 7-byte chunks split the boundary, the headers and the file
        for start in range(0, len(body), 7):
            yield body[start : start + 7]

    split = client.post(
        "/predict?model=tiny", content=trickle(), headers={"content-type": "multipart/form-data; boundary=b0undary"}
    ).json()
    assert len(whole["predictions"]) == len(split["predictions"]) == 2

    def probabilities(answer: dict) -> list[float]:
        return [item["probability"] for row in answer["predictions"] for item in row["probabilities"]]

    # The same images; a model call on a batch of another size may differ in the last bits.
    assert probabilities(split) == pytest.approx(probabilities(whole), abs=1e-6)


@pytest.mark.parametrize("path", ["/v1/models/tiny:predict", "/v2/models/mnist-tiny/infer"])
def test_a_json_body_of_a_million_numbers_is_refused_before_it_is_parsed(client: TestClient, path: str) -> None:
    """About 7 MB of numbers, under MAX_UPLOAD_BYTES: counted, not parsed (a parse holds the
    GIL, and so every other request, for about 0.3 s)."""
    numbers = "[" + ",".join(["0.5"] * 1_000_000) + "]"
    if path.startswith("/v1"):
        body = '{"instances": ' + numbers + "}"
    else:
        body = '{"inputs": [{"name": "images", "shape": [1000000], "datatype": "FP32", "data": ' + numbers + "}]}"
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    error = response.json()["error"]  # both protocols answer {"error": "<message>"}
    assert re.search(r"about 1,000,00\d values", error if isinstance(error, str) else error["message"])


def test_a_json_body_within_the_tensor_limit_is_parsed(client: TestClient) -> None:
    image = [[[0.0]] * 28] * 28
    response = client.post("/v1/models/tiny:predict", json={"instances": [image] * 8})
    assert response.status_code == 200
