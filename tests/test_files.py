"""Uploads into GridFS and downloads from it, through real HTTP against the session's store."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from bson import ObjectId

from bench.round_trips import CommandCounter
from chat_api.store import client as store
from tests.conftest import OtherApp
from tests.factories import TestUser, create_user
from tests.helpers import Api

MiB = 1024 * 1024
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + os.urandom(64)
SAMPLES = {
    "image": {
        "image/png": PNG,
        "image/jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(64),
        "image/gif": b"GIF89a" + os.urandom(64),
        "image/webp": b"RIFF\x24\x00\x00\x00WEBPVP8 " + os.urandom(64),
    },
    "voice": {
        "audio/mpeg": b"ID3\x04\x00\x00\x00\x00\x00\x00" + os.urandom(64),
        "audio/ogg": b"OggS\x00\x02" + os.urandom(64),
        "audio/webm": b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm" + os.urandom(64),
        "audio/wav": b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(64),
    },
}
# An MP3 without an ID3 tag starts with a frame header: sync bits, MPEG-1 layer III, 128 kbit/s.
BARE_MP3 = b"\xff\xfb\x90\x64" + os.urandom(64)


@pytest.fixture
def user(api: Api) -> TestUser:
    return create_user(api)


def upload(api: Api, user: TestUser, kind: str, content: bytes, **extra: Any) -> Any:
    declared = extra.pop("declared", "application/octet-stream")
    return api.post(f"/api/upload/{kind}", headers=user.headers, files={"file": ("f", content, declared)}, **extra)


def uploaded_id(response: Any) -> str:
    assert response.status == 201, response.text
    url: str = response.json["url"]
    assert url.startswith("/api/files/")
    assert response.headers["location"] == url
    return url.removeprefix("/api/files/")


@pytest.mark.parametrize(("kind", "content_type"), [(k, t) for k, types in SAMPLES.items() for t in types])
def test_each_accepted_type_is_stored_and_served_with_its_content_type(
    api: Api, user: TestUser, kind: str, content_type: str
) -> None:
    content = SAMPLES[kind][content_type]
    file_id = uploaded_id(upload(api, user, kind, content))
    served = api.get(f"/api/files/{file_id}")
    assert served.status == 200
    assert served.headers["content-type"] == content_type
    assert served.content == content


def test_a_bare_mp3_frame_is_a_voice_file(api: Api, user: TestUser) -> None:
    file_id = uploaded_id(upload(api, user, "voice", BARE_MP3))
    assert api.get(f"/api/files/{file_id}").headers["content-type"] == "audio/mpeg"


def test_type_is_judged_by_leading_bytes_not_the_declared_content_type(api: Api, user: TestUser) -> None:
    response = upload(api, user, "image", b"<svg onload=alert(1)>" + os.urandom(64), declared="image/png")
    assert response.status == 415
    assert "PNG, JPEG, GIF or WebP" in response.json["message"]
    # Declared as anything, a real PNG is a PNG.
    assert upload(api, user, "image", PNG, declared="text/html").status == 201


def test_voice_on_the_image_route_and_image_on_the_voice_route_are_415(api: Api, user: TestUser) -> None:
    assert upload(api, user, "image", SAMPLES["voice"]["audio/ogg"]).status == 415
    response = upload(api, user, "voice", PNG)
    assert response.status == 415
    assert "MP3, Ogg, WebM or WAV" in response.json["message"]


def test_a_jpeg_is_not_taken_for_a_bare_mp3_frame(api: Api, user: TestUser) -> None:
    assert upload(api, user, "voice", SAMPLES["image"]["image/jpeg"]).status == 415


def test_upload_without_token_is_401(api: Api) -> None:
    response = api.post("/api/upload/image", files={"file": ("a.png", PNG, "image/png")})
    assert response.status == 401


def test_upload_not_multipart_is_400(api: Api, user: TestUser) -> None:
    response = api.post("/api/upload/image", headers=user.headers, json={"file": "abc"})
    assert response.status == 400
    assert "multipart/form-data" in response.json["message"]
    raw = api.post("/api/upload/image", headers={**user.headers, "Content-Type": "image/png"}, content=PNG)
    assert raw.status == 400


def test_upload_without_the_file_field_is_400(api: Api, user: TestUser) -> None:
    response = api.post(
        "/api/upload/image", headers=user.headers, files={"picture": ("a.png", PNG, "image/png")}, data={"x": "1"}
    )
    assert response.status == 400
    assert "`file`" in response.json["message"]


def test_a_truncated_form_is_400(api: Api, user: TestUser) -> None:
    body = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n' + PNG
    headers = {**user.headers, "Content-Type": "multipart/form-data; boundary=xyz"}
    response = api.post("/api/upload/image", headers=headers, content=body)
    assert response.status == 400


def test_an_empty_file_is_400(api: Api, user: TestUser) -> None:
    response = upload(api, user, "image", b"")
    assert response.status == 400
    assert response.json["message"] == "The file is empty"


def test_a_file_of_exactly_5_mib_is_accepted(api: Api, user: TestUser) -> None:
    content = PNG + os.urandom(5 * MiB - len(PNG))
    file_id = uploaded_id(upload(api, user, "image", content))
    served = api.get(f"/api/files/{file_id}")
    assert served.headers["content-length"] == str(5 * MiB)
    assert served.content == content


def test_a_file_over_5_mib_is_413_and_the_client_reads_the_answer(api: Api, user: TestUser) -> None:
    """The whole body is read before the answer, so the client sees the 413, not a reset."""
    content = PNG + os.urandom(6 * MiB)
    response = upload(api, user, "image", content)
    assert response.status == 413
    assert response.json["message"] == "The file is over 5 MiB"
    # Just over the limit, in a form that itself stays under the body's allowance.
    just_over = PNG + os.urandom(5 * MiB + 1 - len(PNG))
    assert upload(api, user, "image", just_over).status == 413


def test_a_chunked_upload_over_5_mib_is_413(api: Api, user: TestUser) -> None:
    boundary = "b0undary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'.encode()

    async def body() -> AsyncIterator[bytes]:
        yield head + PNG
        for _ in range(7):
            yield os.urandom(MiB)
        yield f"\r\n--{boundary}--\r\n".encode()

    async def send() -> httpx.Response:
        # No Content-Length: the server learns the size only while reading.
        headers = {**user.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"}
        async with httpx.AsyncClient(base_url=f"http://{api.client.host}:{api.client.port}", timeout=60) as http:
            return await http.post("/api/upload/image", headers=headers, content=body())

    response = api.client._loop.run_until_complete(send())
    assert response.status_code == 413
    assert response.json()["message"] == "The file is over 5 MiB"


def test_json_routes_keep_their_1_mib_limit(api: Api, user: TestUser) -> None:
    response = api.post("/api/register", json={"username": "x" * (2 * MiB)})
    assert response.status == 413


def test_a_multi_chunk_file_round_trips_exactly(api: Api, user: TestUser, sync_db: Any) -> None:
    content = PNG + os.urandom(3 * MiB + 12345)
    file_id = uploaded_id(upload(api, user, "image", content))
    stored = sync_db["fs.files"].find_one({"_id": ObjectId(file_id)})
    assert stored["length"] == len(content)
    assert len(content) // stored["chunkSize"] >= 10  # many chunks, the last one short
    served = api.get(f"/api/files/{file_id}")
    assert served.status == 200
    assert served.headers["content-length"] == str(len(content))
    assert "chunked" not in served.headers.get("transfer-encoding", "")
    assert served.content == content


def test_the_stored_file_records_its_content_type_and_owner(api: Api, user: TestUser, sync_db: Any) -> None:
    file_id = uploaded_id(upload(api, user, "voice", SAMPLES["voice"]["audio/wav"], declared="image/png"))
    stored = sync_db["fs.files"].find_one({"_id": ObjectId(file_id)})
    assert stored["metadata"] == {"content_type": "audio/wav", "owner_id": user.id, "kind": "voice"}


def test_files_are_public_and_cacheable_for_good(api: Api, user: TestUser) -> None:
    file_id = uploaded_id(upload(api, user, "image", PNG))
    served = api.get(f"/api/files/{file_id}")  # no token: an <img src> sends none
    assert served.status == 200
    assert served.headers["etag"] == f'"{file_id}"'
    assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert served.headers["content-length"] == str(len(PNG))
    assert served.headers["x-content-type-options"] == "nosniff"
    assert served.headers["content-security-policy"].startswith("default-src 'none'")


@pytest.mark.parametrize("if_none_match", ['"{id}"', 'W/"{id}"', '"other", "{id}"', "*"])
def test_if_none_match_answers_304(api: Api, user: TestUser, if_none_match: str) -> None:
    file_id = uploaded_id(upload(api, user, "image", PNG))
    response = api.get(f"/api/files/{file_id}", headers={"If-None-Match": if_none_match.format(id=file_id)})
    assert response.status == 304
    assert response.content == b""
    assert response.headers["etag"] == f'"{file_id}"'
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"


def test_another_etag_gets_the_file(api: Api, user: TestUser) -> None:
    file_id = uploaded_id(upload(api, user, "image", PNG))
    response = api.get(f"/api/files/{file_id}", headers={"If-None-Match": '"0123456789abcdef01234567"'})
    assert response.status == 200
    assert response.content == PNG


@pytest.mark.parametrize("file_id", [str(ObjectId()), "not-an-id", "0" * 25, str(ObjectId()).upper()])
def test_unknown_or_malformed_file_id_is_404(api: Api, file_id: str) -> None:
    response = api.get(f"/api/files/{file_id}")
    assert response.status == 404
    assert response.json == {"message": "File not found"}
    assert response.headers["cache-control"] == "no-store"


def test_an_uppercase_id_of_a_stored_file_is_404(api: Api, user: TestUser) -> None:
    """One file, one URL: the lowercase one its upload answered."""
    file_id = uploaded_id(upload(api, user, "image", PNG))
    assert api.get(f"/api/files/{file_id.upper()}").status == 404


def test_the_openapi_document_describes_the_upload_and_file_routes(other_app: OtherApp) -> None:
    # An app of its own: sanic-ext documents the app started last, not necessarily the session's.
    with other_app() as client:
        _, response = client.get("/docs/openapi.json")
    paths = response.json["paths"]
    image = paths["/api/upload/image"]["post"]
    assert "multipart/form-data" in image["requestBody"]["content"]
    assert image["security"] == [{"bearerAuth": []}]
    assert {"201", "400", "401", "413", "415"} <= set(image["responses"])
    assert image["summary"].startswith("Upload an image")
    served = paths["/api/files/{file_id}"]["get"]
    assert "security" not in served
    assert {"200", "304", "404"} <= set(served["responses"])
    assert "image/png" in served["responses"]["200"]["content"]


def test_a_download_fetches_one_chunk_per_round_trip(
    api: Api, other_app: OtherApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never a cursor over the chunks: on nx-27017 it would bring the whole file in one batch."""
    counter = CommandCounter()
    monkeypatch.setitem(store.CLIENT_OPTIONS, "event_listeners", [counter])
    with other_app() as client:
        content = PNG + os.urandom(3 * MiB)
        user = create_user(Api(client))
        _, uploaded = client.post("/api/upload/image", headers=user.headers, files={"file": ("a", content, "x/y")})
        counter.recording = True
        _, response = client.get(uploaded.json["url"])
        counter.recording = False
    assert response.content == content
    chunks = -(-len(content) // (255 * 1024))
    assert counter.commands == [("find", "fs.files")] + [("find", "fs.chunks")] * chunks


def test_an_upload_without_token_is_401_even_when_large(api: Api) -> None:
    """Refused before its body is read, and answered after it: the client reads the 401, not a reset."""
    response = api.post("/api/upload/image", files={"file": ("a.png", PNG + os.urandom(12 * MiB), "image/png")})
    assert response.status == 401


def test_a_declared_length_past_the_hard_cap_is_413_at_once(api: Api, user: TestUser) -> None:
    """Past 64 MiB nothing is read: the 413 goes out at once and the connection is closed."""

    async def send_headers_only() -> bytes:
        reader, writer = await asyncio.open_connection(api.client.host, api.client.port)
        head = (
            "POST /api/upload/image HTTP/1.1\r\nHost: test\r\n"
            f"Authorization: {user.token}\r\n"
            "Content-Type: multipart/form-data; boundary=x\r\n"
            f"Content-Length: {65 * MiB}\r\n\r\n"
        )
        writer.write(head.encode())
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)
        writer.close()
        return answer

    answer = api.client._loop.run_until_complete(send_headers_only())
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"The file is over 5 MiB" in answer
