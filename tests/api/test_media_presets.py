"""`/v1/presets/thumbnails` and `/v1/presets/logos`: the named presets jobs use, listed without a token."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.helpers import Account, as_xml_scalars, xml_to_data


def test_thumbnail_presets_listed_without_a_token(client: TestClient) -> None:
    response = client.get("/v1/presets/thumbnails")
    assert response.status_code == 200, response.text
    presets = response.json()["thumbnail_presets"]
    assert [preset["name"] for preset in presets] == [
        "thumbnails_small", "thumbnails_medium", "thumbnails_large", "thumbnails_every_10s",
    ]  # fmt: skip
    assert presets[0] == {
        "name": "thumbnails_small",
        "description": "6 thumbnails spread over the video, 160 px wide, JPEG",
        "width": 160,
        "count": 6,
        "format": "jpeg",
    }
    assert presets[3]["interval"] == 10.0 and "count" not in presets[3]  # nulls dropped
    with_nulls = client.get("/v1/presets/thumbnails?show_null=true").json()["thumbnail_presets"]
    assert with_nulls[0]["interval"] is None


def test_logo_presets_in_json_and_xml(client: TestClient, account: Account) -> None:
    presets = client.get("/v1/presets/logos", headers=account.headers).json()["logo_presets"]
    assert len(presets) == 12 + 6  # every percent and corner, and the short names Logo5 … Logo30
    assert presets[-4] == {
        "name": "Logo15",
        "description": "Logo 15% of the video width, bottom right, 2% margin",
        "width_percent": 15,
        "corner": "bottom_right",
        "margin_percent": 2,
    }
    assert presets[2] == {
        "name": "logo_10_bottom_left",
        "description": "Logo 10% of the video width, bottom left, 2% margin",
        "width_percent": 10,
        "corner": "bottom_left",
        "margin_percent": 2,
    }
    assert "logo_30_bottom_right" in {preset["name"] for preset in presets}
    as_xml = client.get("/v1/presets/logos?format=xml&human=true")
    assert as_xml.status_code == 200 and as_xml.headers["content-type"].startswith("application/xml")
    assert b"\n" in as_xml.content  # human: indented
    assert xml_to_data(as_xml.content) == as_xml_scalars({"logo_presets": presets})


def test_routes_do_not_shadow_preset_ids_and_are_documented(client: TestClient) -> None:
    assert client.get("/v1/presets/525ce63284aed52635e85e02").json()["preset"]["name"] == "MP4 720p H.264 AAC"
    schema = client.get("/v1/openapi.json").json()
    for path, key in (("/v1/presets/thumbnails", "thumbnail_presets"), ("/v1/presets/logos", "logo_presets")):
        content = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
        assert content["schema"]["properties"][key]["items"]["properties"]["name"] == {"type": "string"}
    thumbnails = schema["paths"]["/v1/presets/thumbnails"]["get"]["responses"]["200"]["content"]["application/json"]
    assert thumbnails["schema"]["properties"]["thumbnail_presets"]["items"]["properties"]["interval"] == {"type": "number"}
