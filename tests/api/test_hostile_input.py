"""Inputs a hostile client sends: each is refused with 400 (or rendered safely), nothing is stored,
and the account's lists keep working. Each test failed before the bounds existed."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree

import jsonschema_rs
import pytest
from fastapi.testclient import TestClient

from leaktrace.api.openapi import object_schema
from tests.api.helpers import PRESET_720P, Account, job_body, submit_job
from tests.api.test_presets import CUSTOM

HUGE = 18446744073709551616  # 2**64


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def _assert_refused(response: Any, code: str) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"]["error_code"] == code


def _jobs_total(client: TestClient, account: Account) -> int:
    listed = client.get("/v1/jobs/", headers=account.headers)
    assert listed.status_code == 200, listed.text
    return listed.json()["total"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"outputs": [{"preset": {"id": PRESET_720P}, "settings": {"max_duration": HUGE}}]},
        {"outputs": [{"preset": {"id": PRESET_720P}, "settings": {"video": {"width": HUGE}}}]},
        {"playlists": [{"segment": HUGE}]},
        {"playlists": [{"segment": -HUGE}]},
        {"playlists": [_nested(300)]},
        {"playlists": [_nested(600)]},
        {"outputs": [{"preset": {"id": PRESET_720P}, "settings": {"audio": {"bitrate": True}}}]},
        {"outputs": [{"preset": {"id": PRESET_720P}, "settings": {"video": {"height": -1}}}]},
        {"outputs": [{"preset": {"id": PRESET_720P}, "settings": {"video": {"rotate": 100000}}}]},
        {"input": {"input_name": "a.mp4", "start_time": 1e300}},
    ],
    ids=["max_duration", "width", "playlist-int", "playlist-negative-int", "depth-300", "depth-600",
         "bool-bitrate", "negative-height", "rotate"] + ["start_time"],
)  # fmt: skip
def test_out_of_range_job_values_are_refused_and_not_stored(client: TestClient, account: Account, overrides: dict) -> None:
    response = client.post("/v1/jobs/", json=job_body(account, **overrides), headers=account.headers)
    _assert_refused(response, "0x0050001")
    assert _jobs_total(client, account) == 0


@pytest.mark.parametrize("number", ["1e999", "NaN", "-Infinity"])
def test_numbers_json_does_not_allow_are_refused(client: TestClient, account: Account, number: str) -> None:
    body = '{"job": {"pipeline_id": "%s", "input": {"input_name": "a.mp4"}, "outputs": [{"preset_id": "%s"}], ' \
           '"playlists": [{"x": %s}]}}' % (account.pipeline_id, PRESET_720P, number)  # fmt: skip
    response = client.post("/v1/jobs/", content=body, headers={**account.headers, "Content-Type": "application/json"})
    _assert_refused(response, "0x0050001")
    assert _jobs_total(client, account) == 0


@pytest.mark.parametrize("value", [HUGE, -HUGE, 2**53])
def test_out_of_range_preset_settings_are_refused(client: TestClient, account: Account, value: int) -> None:
    preset = {**CUSTOM, "settings": {"quality": value}}
    response = client.post("/v1/presets/", json={"preset": preset}, headers=account.headers)
    _assert_refused(response, "0x0180001")
    listed = client.get("/v1/presets/?type=custom", headers=account.headers)
    assert listed.status_code == 200 and listed.json()["total"] == 0


def test_a_huge_from_date_is_invalid_input(client: TestClient, account: Account) -> None:
    response = client.get("/v1/jobs/?from_date=99999999999999999999999999", headers=account.headers)
    _assert_refused(response, "0x0050001")
    assert "from_date must be at most" in response.json()["error"]["error_message"]


def test_a_lone_surrogate_in_a_token_request_is_invalid_input(client: TestClient, account: Account) -> None:
    body = '{"grant_type": "client_credentials", "client_id": "%s", "client_secret": "\\ud800"}' % account.client_id
    response = client.post("/v1/oauth2/token/", content=body, headers={"Content-Type": "application/json"})
    _assert_refused(response, "0x0010001")


def test_numbers_in_settings_match_the_documented_response_schema(client: TestClient, account: Account) -> None:
    settings = {"max_duration": 60000, "video": {"width": 1280, "height": "100%", "bitrate": 2500.5, "rotate": 90},
                "audio": {"bitrate": 128, "channels": 2}}  # fmt: skip
    job = submit_job(client, account, input={"input_name": "a.mp4", "force_framerate": 25},
                     outputs=[{"preset": {"id": PRESET_720P}, "settings": settings}])  # fmt: skip
    assert job["outputs"][0]["settings"]["video"]["width"] == 1280
    jsonschema_rs.validate(object_schema("job"), job)
    served = client.get("/v1/openapi.json").json()
    post_job = served["paths"]["/v1/jobs"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    jsonschema_rs.validate(post_job, {"job": job})


@pytest.mark.parametrize("text", ["a\x01b", "v\x0bt", "\ufffe", "\uffff"])
def test_xml_carries_characters_xml_cannot_as_replacement_characters(client: TestClient, account: Account, text: str) -> None:
    job = submit_job(client, account, user_data=text)
    response = client.get(f"/v1/jobs/{job['id']}?format=xml", headers=account.headers)
    assert response.status_code == 200
    element = ElementTree.fromstring(response.content).find("job/user_data")
    assert element is not None and element.text == "".join(c if c.isalpha() else "\ufffd" for c in text)


def test_xml_encodes_keys_that_are_not_element_names(client: TestClient, account: Account) -> None:
    job = submit_job(client, account, playlists=[{"{ns": 1, "a b": 2, "1st": 3, "": 4, "ok_key": 5, "a:b": 6}])
    for path in (f"/v1/jobs/{job['id']}?format=xml", "/v1/jobs/?format=xml"):
        response = client.get(path, headers=account.headers)
        assert response.status_code == 200, response.text
        playlist = ElementTree.fromstring(response.content).find(".//playlists/item")
        assert playlist is not None
        assert [(child.tag, child.text) for child in playlist] == [
            ("_x007B_ns", "1"), ("a_x0020_b", "2"), ("_x0031_st", "3"), ("_x_", "4"), ("ok_key", "5"), ("a_x003A_b", "6"),
        ]
