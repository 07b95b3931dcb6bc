"""Signed links (the reference's §4): the test vector, `leaktrace sign-link`, and verification."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from typer.testing import CliRunner

from leaktrace.cli import app as cli
from leaktrace.delivery import signing
from leaktrace.delivery.signing import SignatureError, verify

# §4.4: self-computed with the documented algorithm.
SECRET = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v"
CLIENT_ID = "cb379184054d2011389f5a38"
FILE_ID = "6bf3456ed18f734ab4c01f25"
MESSAGE = (
    "/v1/files/downloads/?file_id=6bf3456ed18f734ab4c01f25&autograph_tag=viewer-42&redirect=true"
    "&multi_use=true&client_id=cb379184054d2011389f5a38&expiry_time=1700000000"
)
SIGNATURE = "e2786117e2fa7d11461382a5b00f88001e280c78e32b1b666d540a9ce8cdb8c7"
SIGNED_URL = "https://api.xvid.com" + MESSAGE + "&signature=" + SIGNATURE
TARGET = MESSAGE + "&signature=" + SIGNATURE
BEFORE_EXPIRY = 1_699_999_000


def secrets(client_id: str) -> str | None:
    return SECRET if client_id == CLIENT_ID else None


def resign(message: str) -> str:
    return message + "&signature=" + signing.sign(message, SECRET)


def test_the_reference_vector() -> None:
    assert signing.sign(MESSAGE, SECRET) == SIGNATURE
    link = signing.download_link(
        file_id=FILE_ID, tag="viewer-42", expiry_time=1_700_000_000, client_id=CLIENT_ID, client_secret=SECRET,
        base_url="https://api.xvid.com",
    )  # fmt: skip
    assert link == SIGNED_URL


@pytest.mark.parametrize("source", ["env", "file", "flag"])
def test_sign_link_command_prints_the_vector(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, source: str) -> None:
    """The secret comes from LEAKTRACE_CLIENT_SECRET or --client-secret-file (the old flag still works)."""
    monkeypatch.setattr(signing.time, "time", lambda: 1_700_000_000 - 3600 + 0.7)
    monkeypatch.delenv("LEAKTRACE_CLIENT_SECRET", raising=False)
    args = ["sign-link", "--file-id", FILE_ID, "--tag", "viewer-42", "--validity", "3600", "--client-id", CLIENT_ID,
            "--base-url", "https://api.xvid.com/"]  # fmt: skip
    if source == "env":
        monkeypatch.setenv("LEAKTRACE_CLIENT_SECRET", SECRET)
    elif source == "file":
        (tmp_path / "secret").write_text(SECRET + "\n")
        args += ["--client-secret-file", str(tmp_path / "secret")]
    else:
        args += ["--client-secret", SECRET]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert result.output == SIGNED_URL + "\n"


def test_sign_link_without_a_secret_says_where_to_put_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEAKTRACE_CLIENT_SECRET", raising=False)
    args = ["sign-link", "--file-id", FILE_ID, "--tag", "v", "--validity", "60", "--client-id", CLIENT_ID]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "LEAKTRACE_CLIENT_SECRET" in result.output


def test_sign_link_uses_the_public_url_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from leaktrace import config

    monkeypatch.setenv("LEAKTRACE_PUBLIC_URL", "http://127.0.0.1:8080")
    monkeypatch.setenv("LEAKTRACE_CLIENT_SECRET", SECRET)
    config.get_settings.cache_clear()
    try:
        args = ["sign-link", "--file-id", FILE_ID, "--tag", "v", "--validity", "60", "--client-id", CLIENT_ID]
        result = CliRunner().invoke(cli, args)
    finally:
        config.get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    link = result.output.strip()
    assert link.startswith("http://127.0.0.1:8080/v1/files/downloads/?file_id=")
    assert verify(link.removeprefix("http://127.0.0.1:8080"), secret_for=secrets).params["autograph_tag"] == "v"


@pytest.mark.parametrize(
    ("option", "value"),
    [("--file-id", "not-an-id"), ("--client-secret", "not base64!"), ("--base-url", "https://h.example/api"),
     ("--base-url", "ftp://h.example"), ("--validity", "0"), ("--tag", "")],
)  # fmt: skip
def test_sign_link_rejects_bad_options(option: str, value: str) -> None:
    options = {"--file-id": FILE_ID, "--tag": "v", "--validity": "60", "--client-id": CLIENT_ID,
               "--client-secret": SECRET, "--base-url": "https://api.xvid.com", option: value}  # fmt: skip
    result = CliRunner().invoke(cli, ["sign-link", *[part for pair in options.items() for part in pair]])
    assert result.exit_code == 2
    assert "Invalid value" in result.output


def test_verify_accepts_the_vector() -> None:
    signed = verify(TARGET, secret_for=secrets, now=BEFORE_EXPIRY)
    assert signed.client_id == CLIENT_ID
    assert signed.expiry_time == 1_700_000_000
    assert signed.multi_use is True
    assert signed.params == {"file_id": FILE_ID, "autograph_tag": "viewer-42", "redirect": "true", "multi_use": "true",
                             "client_id": CLIENT_ID, "expiry_time": "1700000000"}  # fmt: skip
    # Hex in any case; a little clock skew past expiry.
    assert verify(MESSAGE + "&signature=" + SIGNATURE.upper(), secret_for=secrets, now=1_700_000_029).signature == SIGNATURE


@pytest.mark.parametrize(
    ("target", "now", "reason"),
    [
        (TARGET.replace("viewer-42", "viewer-43"), BEFORE_EXPIRY, "does not match"),
        (TARGET.replace("redirect=true", "redirect=false"), BEFORE_EXPIRY, "does not match"),
        (TARGET.replace("/v1/files/downloads/", "/v1/files/downloads"), BEFORE_EXPIRY, "does not match"),
        (TARGET[:-1] + ("0" if TARGET[-1] != "0" else "1"), BEFORE_EXPIRY, "does not match"),
        (TARGET, 1_700_000_031, "expired"),
        (MESSAGE, BEFORE_EXPIRY, "not signed"),
        (TARGET + "&x=1", BEFORE_EXPIRY, "last parameter"),
        (TARGET[:-2], BEFORE_EXPIRY, "last parameter"),
        ("/v1/files/downloads/?signature=" + SIGNATURE + "&" + MESSAGE.split("?")[1], BEFORE_EXPIRY, "not signed"),
        (resign(MESSAGE + "&signature=" + SIGNATURE), BEFORE_EXPIRY, "signature is repeated"),
        (resign(MESSAGE + "&client_id=" + CLIENT_ID), BEFORE_EXPIRY, "repeated"),
        (resign(MESSAGE + "&autograph_tag=someone-else"), BEFORE_EXPIRY, "repeated"),
        (resign(MESSAGE.replace("client_id=" + CLIENT_ID, "client_id=0123456789abcdef01234567")), BEFORE_EXPIRY, "unknown"),
        (resign(MESSAGE.replace("&client_id=" + CLIENT_ID, "")), BEFORE_EXPIRY, "client_id is missing"),
        (resign(MESSAGE.replace("&expiry_time=1700000000", "")), BEFORE_EXPIRY, "expiry_time"),
        (resign(MESSAGE.replace("expiry_time=1700000000", "expiry_time=180")), 0, "expiry_time"),
        (resign(MESSAGE.replace("expiry_time=1700000000", "expiry_time=-1700000000")), 0, "expiry_time"),
        (resign(MESSAGE.replace("multi_use=true", "multi_use=once")), BEFORE_EXPIRY, "multi_use"),
        ("https://api.xvid.com" + TARGET, BEFORE_EXPIRY, "/v1/"),
        ("/v1/files/downloads/", BEFORE_EXPIRY, "/v1/"),
    ],
)
def test_verify_rejects(target: str, now: int, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        verify(target, secret_for=secrets, now=now)


def test_single_use_links_say_so() -> None:
    target = resign(MESSAGE.replace("multi_use=true", "multi_use=false"))
    assert verify(target, secret_for=secrets, now=BEFORE_EXPIRY).multi_use is False


def test_a_secret_that_is_not_base64_cannot_verify() -> None:
    with pytest.raises(SignatureError, match="cannot sign"):
        verify(TARGET, secret_for=lambda _: "not base64!", now=BEFORE_EXPIRY)


def test_raw_targets_are_verified_byte_for_byte() -> None:
    # A client that signs and sends an unencoded UTF-8 tag: the server sees exactly those bytes.
    message = MESSAGE.replace("viewer-42", "日本")
    target = signing.raw_target(*(message + "&signature=" + signing.sign(message, SECRET)).encode().split(b"?", 1))
    assert verify(target, secret_for=secrets, now=BEFORE_EXPIRY).params["autograph_tag"] == "日本"
    with pytest.raises(SignatureError, match="UTF-8"):
        signing.raw_target(b"/v1/files/downloads/", b"autograph_tag=\xff&signature=00")


def _echo_app() -> Starlette:
    # What a delivery route does: verify the raw target, then use the decoded parameters.
    async def endpoint(request: Request) -> JSONResponse:
        target = signing.raw_target(request.scope["raw_path"], request.scope["query_string"])
        try:
            signed = verify(target, secret_for=secrets)
        except SignatureError as exc:
            return JSONResponse({"error": exc.reason}, status_code=403)
        return JSONResponse(signed.params)

    return Starlette(routes=[Route("/v1/files/downloads/", endpoint)])


@pytest.mark.parametrize("tag", ["viewer-42", "ana maría & co", "a+b=c#d", "../x?y", "日本"])
def test_links_survive_an_http_round_trip(tag: str) -> None:
    link = signing.download_link(file_id=FILE_ID, tag=tag, expiry_time=signing.expiry_after(600), client_id=CLIENT_ID,
                                 client_secret=SECRET, base_url="http://testserver")  # fmt: skip
    with TestClient(_echo_app()) as client:
        response = client.get(link)
        assert response.status_code == 200, response.text
        assert response.json()["autograph_tag"] == tag
        # The raw bytes are what is signed: decoding and re-encoding the tag differently fails.
        reencoded = link.replace("autograph_tag=viewer-42", "autograph_tag=viewer%2D42")
        if reencoded != link:
            assert client.get(reencoded).status_code == 403
        plus = link.replace("%20", "+")
        if plus != link:
            assert client.get(plus).status_code == 403
