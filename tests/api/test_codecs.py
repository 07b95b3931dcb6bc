"""`/v1/codecs/`: the seeded system codecs, readable without a token."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.helpers import Account

H264 = "525ce63284aed52635e85d05"
AAC = "525ce63284aed52635e85d06"
H265 = "525ce63284aed52635e85d07"


def test_list_without_a_token(client: TestClient) -> None:
    response = client.get("/v1/codecs/?sort=name")
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(c["name"], c["type"], c["id"]) for c in body["codecs"]] == [
        ("AAC", "audio", AAC),
        ("H.264", "video", H264),
        ("H.265", "video", H265),
    ]
    assert (body["total"], body["start"], body["limit"]) == (3, 0, 1000)


def test_capabilities_follow_the_array_convention(client: TestClient) -> None:
    codec = client.get(f"/v1/codecs/{H264}").json()["codec"]
    assert list(codec) == ["name", "description", "type", "passes", "autograph", "profiles", "version",
                           "created_at", "updated_at", "id", "href"]  # fmt: skip
    assert codec["href"] == f"https://api.xvid.com/v1/codecs/{H264}"
    assert codec["autograph"] == [True]
    assert codec["passes"] == [1, 2]
    baseline = codec["profiles"][0]
    assert baseline["name"] == "Baseline"
    assert "mp4" in baseline["containers"]
    caps = baseline["capabilities"]
    assert set(caps) == {"interlaced", "max_key_distance", "max_width", "max_height", "max_framerate",
                         "max_bitrate", "max_ref_frames", "max_buffersize"}  # fmt: skip
    assert caps["interlaced"] == [False]
    assert all(len(caps[key]) == 2 and caps[key][0] < caps[key][1] for key in caps if key != "interlaced")
    aac = client.get(f"/v1/codecs/{AAC}").json()["codec"]
    assert set(aac["profiles"][0]["capabilities"]) == {"max_bitdepth", "max_channels", "max_samplingrate", "max_bitrate"}
    assert aac["autograph"] == [False]


def test_type_filter(client: TestClient) -> None:
    video = client.get("/v1/codecs/?type=video").json()
    assert {c["name"] for c in video["codecs"]} == {"H.264", "H.265"}
    assert video["total"] == 2
    audio = client.get("/v1/codecs/?type=audio&format=xml")
    assert audio.status_code == 200
    assert audio.headers["content-type"].startswith("application/xml")
    assert b"<name>AAC</name>" in audio.content
    bad = client.get("/v1/codecs/?type=subtitle")
    assert (bad.status_code, bad.json()["error"]["error_code"]) == (400, "0x0190001")


def test_with_a_token_and_with_a_bad_one(client: TestClient, account: Account) -> None:
    assert client.get(f"/v1/codecs/{AAC}", headers=account.headers).json()["codec"]["name"] == "AAC"
    bad = client.get("/v1/codecs/", headers={"Authorization": "Bearer not-a-token"})
    assert (bad.status_code, bad.json()["error"]["error_code"]) == (403, "0x0000003")


def test_unknown_codec_is_404(client: TestClient) -> None:
    for codec_id in ("0" * 24, "h264"):
        response = client.get(f"/v1/codecs/{codec_id}")
        assert (response.status_code, response.json()["error"]["error_code"]) == (404, "0x0190002")


def test_codecs_are_read_only(client: TestClient, account: Account) -> None:
    response = client.post("/v1/codecs/", json={"codec": {"name": "VP9"}}, headers=account.headers)
    assert (response.status_code, response.json()["error"]["error_code"]) == (405, "0x0000006")
    response = client.delete(f"/v1/codecs/{H264}", headers=account.headers)
    assert response.status_code == 405
