"""The caller's own account."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.helpers import Account


def test_get_own_account(client: TestClient, account: Account) -> None:
    listed = client.get("/v1/users/?show_null=true", headers=account.headers).json()
    assert listed["total"] == 1 and listed["users"][0]["id"] == account.user_id
    user = client.get(f"/v1/users/{account.user_id}?show_null=true", headers=account.headers).json()["user"]
    assert list(user) == [
        "first_name", "last_name", "email", "password", "client_password_salt", "name", "billing_address",
        "profile", "setting", "confirmed_on", "changed_email_confirmed", "version", "created_at", "updated_at", "id", "href",
    ]  # fmt: skip
    assert user["password"] == "*******" and user["client_password_salt"] == "*******"
    assert user["href"] == f"https://api.xvid.com/v1/users/{account.user_id}"


def test_partial_update(client: TestClient, account: Account) -> None:
    path = f"/v1/users/{account.user_id}"
    body = {"user": {"first_name": "Ada", "address": {"city": "Tallinn", "zip_code": 10111}, "setting": {"newsletter_flag": True}}}
    updated = client.put(path, json=body, headers=account.headers)
    assert updated.status_code == 200, updated.text
    user = updated.json()["user"]
    assert user["first_name"] == "Ada" and user["version"] == 2
    assert user["billing_address"] == {"city": "Tallinn", "zip_code": "10111"}
    again = client.put(path, json={"user": {"last_name": "L", "billing_address": {"street": "Main 1"}, "first_name": None}}, headers=account.headers)
    user = again.json()["user"]
    assert "first_name" not in user and user["last_name"] == "L"
    assert user["billing_address"] == {"city": "Tallinn", "zip_code": "10111", "street": "Main 1"}


def test_bad_updates_are_400(client: TestClient, account: Account) -> None:
    path = f"/v1/users/{account.user_id}"
    for body in (
        {"user": {"name": None}},
        {"user": {"email": "not-an-email"}},
        {"user": {"setting": {"newsletter_flag": "often"}}},
        {"user": {"password": "hunter2"}},
        {"user": {"first_name": ["A"]}},
        {"name": "x"},
    ):
        response = client.put(path, json=body, headers=account.headers)
        assert response.status_code == 400, body
        assert response.json()["error"]["error_code"] == "0x0020001"


def test_other_ids_are_404(client: TestClient, account: Account) -> None:
    response = client.put(f"/v1/users/{'0' * 24}", json={"user": {"first_name": "X"}}, headers=account.headers)
    assert response.status_code == 404
    assert response.json() == {"error": {"error_code": "0x0020002", "error_message": "User does not exist"}}
