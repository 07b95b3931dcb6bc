"""`/v1/presets/`: system presets (public, immutable) and custom presets checked against codecs."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import Account, submit_job

INVALID = "0x0180001"
NOT_FOUND = "0x0180002"
H264 = "525ce63284aed52635e85d05"
AAC = "525ce63284aed52635e85d06"
SYSTEM_1080P = "525ce63284aed52635e85e01"

CUSTOM = {
    "name": "Low 240p",
    "description": "Small previews",
    "target_format": {
        "extension": "mp4",
        "container": "mp4",
        "vcodec": {
            "codec": {"id": H264},
            "profile": "Baseline",
            "passes": 1,
            "caps": {"interlaced": "false", "max_width": 426, "max_height": "240", "max_bitrate": 400},
        },
        "acodec": {"codec": {"id": AAC}, "profile": "LC", "passes": 1,
                   "caps": {"max_bitdepth": 16, "max_channels": 2, "max_samplingrate": 44100, "max_bitrate": 64}},
    },
    "settings": {"subtitle_policy": "ignore"},
}  # fmt: skip


def create(client: TestClient, account: Account, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = client.post("/v1/presets/?show_null=true", json={"preset": body or CUSTOM}, headers=account.headers)
    assert response.status_code == 201, response.text
    return response.json()["preset"]


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["error_code"] == code


def test_system_presets_are_public(client: TestClient) -> None:
    body = client.get("/v1/presets/?sort=name").json()
    names = [p["name"] for p in body["presets"]]
    assert names == ["MP4 1080p H.264 AAC", "MP4 360p H.264 AAC", "MP4 480p H.264 AAC", "MP4 720p H.264 AAC"]
    assert {p["type"] for p in body["presets"]} == {"system"}
    preset = client.get(f"/v1/presets/{SYSTEM_1080P}?expand=codec").json()["preset"]
    assert "user" not in preset
    vcodec = preset["target_format"]["vcodec"]
    assert (vcodec["codec"]["name"], vcodec["caps"]["max_width"], vcodec["caps"]["max_height"]) == ("H.264", 1920, 1080)
    assert preset["target_format"]["acodec"]["codec"]["name"] == "AAC"
    assert preset["target_format"]["container"] == "mp4"


def test_sort_on_nested_keys(client: TestClient) -> None:
    body = client.get("/v1/presets/?sort=target_format.vcodec.caps.max_width&direction=-1&limit=3").json()
    assert [p["target_format"]["vcodec"]["caps"]["max_width"] for p in body["presets"]] == [1920, 1280, 854]
    assert body["total"] == 4
    assert body["next"]["href"].startswith("https://api.xvid.com/v1/presets/?start=3&limit=3&sort=")


def test_create_normalises_caps(client: TestClient, account: Account) -> None:
    preset = create(client, account)
    assert preset["type"] == "custom"
    assert preset["user"] == {"id": account.user_id, "href": f"https://api.xvid.com/v1/users/{account.user_id}"}
    assert preset["target_format"] == {
        "extension": "mp4",
        "container": "mp4",
        "vcodec": {
            "codec": {"id": H264, "href": f"https://api.xvid.com/v1/codecs/{H264}"},
            "profile": "Baseline",
            "passes": 1,
            "caps": {"interlaced": False, "max_width": 426, "max_height": 240, "max_bitrate": 400},
        },
        "acodec": {
            "codec": {"id": AAC, "href": f"https://api.xvid.com/v1/codecs/{AAC}"},
            "profile": "LC",
            "passes": 1,
            "caps": {"max_bitdepth": 16, "max_channels": 2, "max_samplingrate": 44100, "max_bitrate": 64},
        },
    }
    assert preset["settings"] == {"subtitle_policy": "ignore"}
    assert preset["version"] == 1
    assert client.get(f"/v1/presets/{preset['id']}?show_null=true", headers=account.headers).json()["preset"] == preset


def test_xml_carries_the_same_preset(client: TestClient, account: Account) -> None:
    from tests.api.helpers import as_xml_scalars, xml_to_data

    preset = create(client, account)
    as_json = client.get(f"/v1/presets/{preset['id']}?expand=codec", headers=account.headers).json()
    as_xml = client.get(f"/v1/presets/{preset['id']}?expand=codec&format=xml", headers=account.headers)
    assert as_xml.headers["content-type"].startswith("application/xml")
    assert xml_to_data(as_xml.content) == as_xml_scalars(as_json)


def test_audio_only_preset(client: TestClient, account: Account) -> None:
    body = copy.deepcopy(CUSTOM)
    del body["target_format"]["vcodec"]
    body["target_format"]["container"] = "mkv"
    preset = create(client, account, body)
    assert preset["target_format"]["vcodec"] is None


def test_type_filter_and_visibility(client: TestClient, account: Account, other_account: Account) -> None:
    mine = create(client, account)
    theirs = create(client, other_account)
    listed = client.get("/v1/presets/?type=custom", headers=account.headers).json()
    assert [p["id"] for p in listed["presets"]] == [mine["id"]]
    everything = client.get("/v1/presets/", headers=account.headers).json()
    assert everything["total"] == 5
    assert client.get("/v1/presets/?type=system", headers=account.headers).json()["total"] == 4
    anonymous = client.get("/v1/presets/?type=custom").json()
    assert (anonymous["total"], anonymous["presets"]) == (0, [])
    assert_error(client.get(f"/v1/presets/{mine['id']}"), 404, NOT_FOUND)
    assert_error(client.get(f"/v1/presets/{theirs['id']}", headers=account.headers), 404, NOT_FOUND)
    assert_error(client.get("/v1/presets/?type=mine"), 400, INVALID)


def test_replace_and_delete(client: TestClient, account: Account) -> None:
    preset = create(client, account)
    body = copy.deepcopy(CUSTOM)
    body["name"] = "Low 240p v2"
    body["target_format"]["vcodec"]["caps"]["max_bitrate"] = 300
    response = client.put(f"/v1/presets/{preset['id']}", json={"preset": body}, headers=account.headers)
    assert response.status_code == 200, response.text
    replaced = response.json()["preset"]
    assert (replaced["name"], replaced["version"]) == ("Low 240p v2", 2)
    assert replaced["target_format"]["vcodec"]["caps"]["max_bitrate"] == 300
    response = client.delete(f"/v1/presets/{preset['id']}", headers=account.headers)
    assert (response.status_code, response.json()) == (200, {"result": {"status": "SUCCESS"}})
    assert_error(client.get(f"/v1/presets/{preset['id']}", headers=account.headers), 404, NOT_FOUND)


def test_a_preset_in_use_cannot_be_deleted(client: TestClient, account: Account) -> None:
    preset = create(client, account)
    submit_job(client, account, outputs=[{"preset": {"id": preset["id"]}}])
    assert_error(client.delete(f"/v1/presets/{preset['id']}", headers=account.headers), 400, INVALID)


def test_system_presets_are_immutable(client: TestClient, account: Account) -> None:
    assert_error(client.put(f"/v1/presets/{SYSTEM_1080P}", json={"preset": CUSTOM}, headers=account.headers), 400, INVALID)
    assert_error(client.delete(f"/v1/presets/{SYSTEM_1080P}", headers=account.headers), 400, INVALID)
    assert client.get(f"/v1/presets/{SYSTEM_1080P}").json()["preset"]["version"] == 1


def test_other_accounts_presets_are_404(client: TestClient, account: Account, other_account: Account) -> None:
    theirs = create(client, other_account)
    assert_error(client.put(f"/v1/presets/{theirs['id']}", json={"preset": CUSTOM}, headers=account.headers), 404, NOT_FOUND)
    assert_error(client.delete(f"/v1/presets/{theirs['id']}", headers=account.headers), 404, NOT_FOUND)
    assert client.get(f"/v1/presets/{theirs['id']}", headers=other_account.headers).status_code == 200


def _with(path: str, value: Any) -> dict[str, Any]:
    """CUSTOM with the value at a dotted path replaced (or deleted when value is DELETE)."""
    body = copy.deepcopy(CUSTOM)
    *parents, last = path.split(".")
    node: Any = body
    for part in parents:
        node = node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return body


DELETE = object()
BAD = [
    ("name", DELETE), ("description", DELETE), ("target_format", DELETE), ("name", ""), ("name", 12),
    ("description", ["x"]), ("target_format", "mp4"), ("target_format.container", DELETE),
    ("target_format.container", "avi"), ("target_format.container", "mp4; rm -rf"),
    ("target_format.vcodec.codec", DELETE), ("target_format.vcodec.codec.id", "0" * 24),
    ("target_format.vcodec.codec.id", AAC), ("target_format.acodec.codec.id", H264),
    ("target_format.vcodec.codec.id", 5), ("target_format.vcodec.profile", "Extreme"),
    ("target_format.vcodec.passes", 3), ("target_format.vcodec.passes", "1"), ("target_format.acodec.passes", 2),
    ("target_format.vcodec.caps", DELETE), ("target_format.vcodec.caps", [1, 2]),
    ("target_format.vcodec.caps.max_width", 10000), ("target_format.vcodec.caps.max_width", 16),
    ("target_format.vcodec.caps.max_width", "wide"), ("target_format.vcodec.caps.max_width", True),
    ("target_format.vcodec.caps.max_width", [426]), ("target_format.vcodec.caps.interlaced", True),
    ("target_format.vcodec.caps.interlaced", "sometimes"), ("target_format.vcodec.caps.max_channels", 2),
    ("target_format.acodec.caps.max_width", 640), ("target_format.acodec.caps.max_bitdepth", 24),
    ("target_format.acodec.caps.max_samplingrate", 192000), ("target_format.vcodec.caps.max_bitrate", "NaN"),
("target_format.vcodec.speed", "fast"),
    ("settings", "ignore"), ("settings", {"subtitle_policy": {"nested": 1}}), ("settings", {"1080p": True}),
    ("settings", {"a b": 1}), ("settings", {"<x>": 1}), ("settings", {"x": "a\u0000"}), ("name", "a\u0000"),
    ("colour", "blue"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "value"), BAD, ids=[f"{p}={'DELETE' if v is DELETE else v!r}"[:60] for p, v in BAD])
def test_bad_bodies_are_400(client: TestClient, account: Account, path: str, value: Any) -> None:
    body = {"preset": _with(path, value)}
    assert_error(client.post("/v1/presets/", json=body, headers=account.headers), 400, INVALID)
    preset_id = create(client, account)["id"]
    assert_error(client.put(f"/v1/presets/{preset_id}", json=body, headers=account.headers), 400, INVALID)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_400(client: TestClient, account: Account, literal: str) -> None:
    raw = json.dumps({"preset": _with("target_format.vcodec.caps.max_bitrate", "PLACEHOLDER")})
    raw = raw.replace('"PLACEHOLDER"', literal)
    headers = {**account.headers, "Content-Type": "application/json"}
    assert_error(client.post("/v1/presets/", content=raw.encode(), headers=headers), 400, INVALID)


def test_no_codec_at_all_is_400(client: TestClient, account: Account) -> None:
    body = {"preset": {"name": "x", "description": "d", "target_format": {"container": "mp4"}}}
    assert_error(client.post("/v1/presets/", json=body, headers=account.headers), 400, INVALID)


@pytest.mark.parametrize(
    "raw",
    [b"{", b"[]", b"null", b'{"preset": 1}', b"\xff", b'{"preset": ' + b"[" * 5000 + b"]" * 5000 + b"}"],
    ids=["truncated", "array", "null", "number", "binary", "deeply-nested"],
)
def test_malformed_json_is_400(client: TestClient, account: Account, raw: bytes) -> None:
    headers = {**account.headers, "Content-Type": "application/json"}
    assert_error(client.post("/v1/presets/", content=raw, headers=headers), 400, INVALID)


def test_huge_body_is_413(client: TestClient, account: Account) -> None:
    body = {"preset": {**CUSTOM, "description": "x" * 100_000}}
    assert_error(client.post("/v1/presets/", json=body, headers=account.headers), 413, "0x0000007")


def test_writing_needs_a_token(client: TestClient) -> None:
    assert_error(client.post("/v1/presets/", json={"preset": CUSTOM}), 401, "0x0000002")


def test_scopes(client: TestClient, account: Account) -> None:
    from tests.api.helpers import get_token

    def headers(scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {get_token(client, account.client_id, account.client_secret, scope=scope)}"}

    me_only, read_only = headers("me"), headers("mediahub_read")
    assert_error(client.get("/v1/presets/", headers=me_only), 403, "0x0000004")
    assert client.get("/v1/presets/", headers=read_only).status_code == 200
    assert_error(client.post("/v1/presets/", json={"preset": CUSTOM}, headers=read_only), 403, "0x0000004")
    assert_error(client.get("/v1/presets/", headers={"Authorization": "Bearer nope"}), 403, "0x0000003")
