"""Paging, sorting and the common query parameters on lists."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from leaktrace.api.responses import last_start
from leaktrace.config import Settings
from tests.api.helpers import Account, new_account, submit_backtrace, submit_job

BASE = "https://api.xvid.com/v1/backtraces/"


@pytest.fixture(scope="module")
def many(client: TestClient, settings: Settings) -> tuple[Account, list[str]]:
    """An account with 115 backtraces, made through the API; returns their ids oldest first."""
    account = new_account(client, settings)
    job = submit_job(client, account, autograph={"watermark_strength": "light"})
    ids = [submit_backtrace(client, account, job["id"], input_name=f"uploads/{i:03d}.mp4")["id"] for i in range(115)]
    return account, ids


def test_links_on_115_backtraces(client: TestClient, many: tuple[Account, list[str]]) -> None:
    account, _ = many
    query = "human=true&show_null=true&limit=2&sort=created_at&direction=-1"
    body = client.get(f"/v1/titles/backtraces/?{query}", headers=account.headers).json()
    rest = "human=true&show_null=true&sort=created_at&direction=-1"
    assert (body["total"], body["start"], body["limit"]) == (115, 0, 2)
    assert body["first"] == {"href": f"{BASE}?start=0&limit=2&{rest}"}
    assert body["last"] == {"href": f"{BASE}?start=114&limit=2&{rest}"}
    assert body["next"] == {"href": f"{BASE}?start=2&limit=2&{rest}"}
    assert body["prev"] == {"href": f"{BASE}?start=0&limit=2&{rest}"}

    middle = client.get(f"/v1/backtraces/?start=60&{query}", headers=account.headers).json()
    assert middle["next"]["href"] == f"{BASE}?start=62&limit=2&{rest}"
    assert middle["prev"]["href"] == f"{BASE}?start=58&limit=2&{rest}"
    last = client.get(f"/v1/backtraces/?start=114&{query}", headers=account.headers).json()
    assert len(last["backtraces"]) == 1 and last["next"]["href"] == f"{BASE}?start=114&limit=2&{rest}"


def test_walking_the_pages_visits_every_backtrace_once_in_order(client: TestClient, many: tuple[Account, list[str]]) -> None:
    account, ids = many
    seen: list[str] = []
    url = "/v1/backtraces/?limit=7&sort=created_at&direction=-1"
    while True:
        body = client.get(url, headers=account.headers).json()
        seen += [b["id"] for b in body["backtraces"]]
        if body["start"] + body["limit"] >= body["total"]:
            break
        url = body["next"]["href"].removeprefix("https://api.xvid.com")
    assert len(seen) == 115 and set(seen) == set(ids)
    created = [
        (b["created_at"], b["id"])
        for b in client.get("/v1/backtraces/?limit=200", headers=account.headers).json()["backtraces"]
    ]
    assert seen == [i for _, i in sorted(created, reverse=True)]


def test_sort_on_dotted_and_computed_keys(client: TestClient, many: tuple[Account, list[str]]) -> None:
    account, _ = many
    names = [b["input"]["input_name"] for b in client.get("/v1/backtraces/?sort=input.input_name&direction=-1&limit=3", headers=account.headers).json()["backtraces"]]
    assert names == ["uploads/114.mp4", "uploads/113.mp4", "uploads/112.mp4"]
    # `href` has no column: sorted after presenting, same result shape.
    body = client.get("/v1/backtraces/?sort=href&limit=5&start=1", headers=account.headers).json()
    hrefs = [b["href"] for b in body["backtraces"]]
    assert hrefs == sorted(hrefs) and body["total"] == 115 and len(hrefs) == 5


@pytest.mark.parametrize(
    "query", ["limit=5001", "limit=0", "limit=-1", "limit=ten", "start=-1", "start=1.5", "direction=up", "direction=", "sort=", "format=yaml", "human=perhaps", "show_null=2", "expand_all=yes please"]
)
def test_bad_common_parameters_are_400(client: TestClient, many: tuple[Account, list[str]], query: str) -> None:
    account, _ = many
    response = client.get(f"/v1/backtraces/?{query}", headers=account.headers)
    assert response.status_code == 400, query
    assert response.json()["error"]["error_code"] == "0x0300001"


def test_limit_bounds_and_default(client: TestClient, many: tuple[Account, list[str]]) -> None:
    account, _ = many
    assert client.get("/v1/backtraces/?limit=5000", headers=account.headers).json()["limit"] == 5000
    body = client.get("/v1/backtraces/", headers=account.headers).json()
    assert (body["limit"], len(body["backtraces"])) == (1000, 115)
    beyond = client.get("/v1/backtraces/?start=500", headers=account.headers).json()
    assert beyond["backtraces"] == [] and beyond["total"] == 115


@pytest.mark.parametrize(("total", "limit", "expected"), [(115, 2, 114), (1054, 2, 1052), (0, 10, 0), (10, 10, 0), (11, 10, 10), (1, 1000, 0)])
def test_last_start(total: int, limit: int, expected: int) -> None:
    assert last_start(total, limit) == expected


def test_format_and_accept(client: TestClient, many: tuple[Account, list[str]]) -> None:
    account, _ = many
    as_xml = client.get("/v1/backtraces/?limit=1", headers={**account.headers, "Accept": "application/xml"})
    assert as_xml.headers["content-type"].startswith("application/xml") and as_xml.text.startswith("<?xml")
    forced = client.get("/v1/backtraces/?limit=1&format=json", headers={**account.headers, "Accept": "application/xml"})
    assert forced.headers["content-type"].startswith("application/json")
    assert client.get("/v1/backtraces/?limit=1&format=xml", headers=account.headers).text.startswith("<?xml")
