"""Server-side fetches against real servers on loopback: HTTP with redirects, S3 (moto's server),
SFTP (paramiko's server side), local folders; the address guard; credentials kept out of messages."""

from __future__ import annotations

import base64
import ipaddress
import os
import socket
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import boto3
import paramiko
import pytest
from moto.server import ThreadedMotoServer

from leaktrace.config import Settings
from leaktrace.media import fetch as fetching
from leaktrace.media.fetch import FetchError, FetchPolicy, fetch, redact, resolve, resolve_logo
from leaktrace.media.fetch import guard
from tests.media.servers import HTTPTestServer, redirect, send_bytes, sftp_server

LOOPBACK = Settings(fetch_allow_networks="127.0.0.0/8").allowed_networks
PAYLOAD = os.urandom(3 * 1024 * 1024 + 17)  # more than one chunk, not a multiple of it


def loopback_policy(**changes: object) -> FetchPolicy:
    return FetchPolicy(allowed_networks=LOOPBACK, connect_timeout_s=5, read_timeout_s=5, **changes)  # type: ignore[arg-type]


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


@pytest.fixture(scope="module")
def http_server():
    with HTTPTestServer() as server:
        server.routes["/title.bin"] = send_bytes(PAYLOAD)
        yield server


# ---- https / http ---------------------------------------------------------------------------------


def test_http_fetch_copies_the_bytes_and_reports_progress(http_server, tmp_path):
    seen: list[tuple[int, int | None]] = []
    size = fetch(http_server.url("/title.bin"), tmp_path / "in.mp4", policy=loopback_policy(), progress=lambda d, t: seen.append((d, t)))
    assert size == len(PAYLOAD)
    assert (tmp_path / "in.mp4").read_bytes() == PAYLOAD
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD)) and len(seen) >= 4
    assert leftovers(tmp_path) == ["in.mp4"]


def test_redirects_are_followed_relative_and_absolute(http_server, tmp_path):
    http_server.routes["/relative"] = redirect("/title.bin", status=301)
    http_server.routes["/absolute"] = redirect(http_server.url("/relative"), status=307)
    assert fetch(http_server.url("/absolute"), tmp_path / "a", policy=loopback_policy()) == len(PAYLOAD)
    assert (tmp_path / "a").read_bytes() == PAYLOAD


def test_a_redirect_loop_ends(http_server, tmp_path):
    http_server.routes["/loop"] = redirect("/loop")
    with pytest.raises(FetchError) as caught:
        fetch(http_server.url("/loop"), tmp_path / "a", policy=loopback_policy())
    assert caught.value.code == "fetch_failed" and "redirects" in caught.value.message
    assert leftovers(tmp_path) == []


def test_missing_is_not_found_and_errors_are_fetch_failed(http_server, tmp_path):
    http_server.routes["/broken"] = send_bytes(b"oops", status=500)
    with pytest.raises(FetchError) as missing:
        fetch(http_server.url("/nothing-here"), tmp_path / "a", policy=loopback_policy())
    with pytest.raises(FetchError) as broken:
        fetch(http_server.url("/broken"), tmp_path / "a", policy=loopback_policy())
    assert (missing.value.code, broken.value.code) == ("not_found", "fetch_failed")
    assert "HTTP 500" in broken.value.message
    assert leftovers(tmp_path) == []


def test_basic_auth_from_the_uri_reaches_the_server_but_never_the_message(http_server, tmp_path):
    expected = "Basic " + base64.b64encode(b"studio:s3cr3t-pw").decode()

    def guarded(handler: BaseHTTPRequestHandler) -> None:
        if handler.headers.get("Authorization") == expected:
            send_bytes(b"ok")(handler)
        else:
            send_bytes(b"", status=401)(handler)

    http_server.routes["/private"] = guarded
    uri = http_server.url("/private").replace("http://", "http://studio:s3cr3t-pw@")
    assert fetch(uri, tmp_path / "a", policy=loopback_policy()) == 2
    wrong = uri.replace("s3cr3t-pw", "wrong-pass")
    with pytest.raises(FetchError) as caught:
        fetch(wrong, tmp_path / "b", policy=loopback_policy())
    assert caught.value.code == "fetch_failed"
    assert "wrong-pass" not in str(caught.value) and "studio" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_an_interrupted_transfer_leaves_no_file(http_server, tmp_path):
    def cut(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(PAYLOAD)))
        handler.end_headers()
        handler.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
        handler.wfile.flush()
        handler.connection.shutdown(socket.SHUT_RDWR)

    http_server.routes["/cut"] = cut
    with pytest.raises(FetchError) as caught:
        fetch(http_server.url("/cut"), tmp_path / "in.mp4", policy=loopback_policy())
    assert caught.value.code == "fetch_failed"
    assert leftovers(tmp_path) == []


def test_cancel_and_size_limit_leave_no_file(http_server, tmp_path):
    calls = []

    def cancelled() -> bool:
        calls.append(1)
        return len(calls) > 2  # after the first chunk arrived

    with pytest.raises(FetchError) as stopped:
        fetch(http_server.url("/title.bin"), tmp_path / "a", policy=loopback_policy(), cancelled=cancelled)
    with pytest.raises(FetchError) as large:
        fetch(http_server.url("/title.bin"), tmp_path / "b", policy=loopback_policy(max_bytes=len(PAYLOAD) - 1))
    assert (stopped.value.code, large.value.code) == ("cancelled", "too_large")
    assert leftovers(tmp_path) == []


def test_a_streamed_body_over_the_limit_is_stopped(http_server, tmp_path):
    def unannounced(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(PAYLOAD)

    http_server.routes["/unannounced"] = unannounced
    with pytest.raises(FetchError) as caught:
        fetch(http_server.url("/unannounced"), tmp_path / "a", policy=loopback_policy(max_bytes=1024 * 1024))
    assert caught.value.code == "too_large"
    assert leftovers(tmp_path) == []


# ---- the address guard ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:{port}/title.bin",
        "http://localhost:{port}/title.bin",  # a name resolving to loopback
        "http://[::1]:{port}/title.bin",
        "http://10.0.0.1:{port}/title.bin",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://100.64.0.1/",
        "http://[::ffff:127.0.0.1]:{port}/title.bin",
        "http://0.0.0.0:{port}/title.bin",
        "s3://key:secret@us-east-1/bucket/key?endpoint=http://127.0.0.1:{port}",
        "sftp://user:pw@127.0.0.1:{port}/file",
    ],
)
def test_the_default_policy_refuses_internal_addresses(http_server, tmp_path, uri):
    before = len(http_server.requests)
    with pytest.raises(FetchError) as caught:
        fetch(uri.format(port=http_server.port), tmp_path / "a", policy=FetchPolicy())
    assert caught.value.code == "refused_address"
    assert len(http_server.requests) == before  # not even one request reached the server
    assert leftovers(tmp_path) == []


def test_a_redirect_from_an_allowed_server_to_a_refused_address_is_refused(http_server, tmp_path):
    http_server.routes["/to-metadata"] = redirect("http://169.254.169.254/latest/meta-data/")
    http_server.routes["/to-ipv6-loopback"] = redirect(f"http://[::1]:{http_server.port}/title.bin")
    http_server.routes["/to-private"] = redirect("http://10.1.2.3/")
    for path in ("/to-metadata", "/to-ipv6-loopback", "/to-private"):
        with pytest.raises(FetchError) as caught:
            fetch(http_server.url(path), tmp_path / "a", policy=loopback_policy())
        assert caught.value.code == "refused_address", path
    assert leftovers(tmp_path) == []


def test_the_address_checked_is_the_address_connected_to(http_server, tmp_path, monkeypatch):
    """DNS rebinding: a name answering loopback once and a private address after is looked up once."""
    real = socket.getaddrinfo
    lookups = []

    def rebinding(host, port, *args, **kwargs):
        if host == "rebind.test":
            lookups.append(host)
            host = "127.0.0.1" if len(lookups) == 1 else "10.0.0.1"
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    uri = http_server.url("/title.bin", host="rebind.test")
    assert fetch(uri, tmp_path / "a", policy=loopback_policy()) == len(PAYLOAD)
    assert lookups == ["rebind.test"]
    assert http_server.requests[-1][2]["Host"] == f"rebind.test:{http_server.port}"


def test_unresolvable_names_fail_without_traffic(tmp_path):
    with pytest.raises(FetchError) as caught:
        fetch("https://does-not-exist.invalid/x.mp4", tmp_path / "a", policy=FetchPolicy())
    assert caught.value.code == "fetch_failed"


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("10.200.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),
        ("169.254.169.254", False),
        ("224.0.0.251", False),
        ("0.0.0.0", False),
        ("::", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("fd00:ec2::254", False),
        ("::ffff:10.0.0.1", False),
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
        ("2002:a00:1::1", False),  # 6to4 of 10.0.0.1
        ("ff02::1", False),
    ],
)
def test_address_classes(address, allowed):
    assert guard.is_allowed(ipaddress.ip_address(address), allowed_networks=()) is allowed


def test_allowed_networks_open_exactly_what_they_list():
    networks = Settings(fetch_allow_networks="10.1.0.0/16, ::1/128").allowed_networks
    assert guard.is_allowed(ipaddress.ip_address("10.1.2.3"), allowed_networks=networks)
    assert guard.is_allowed(ipaddress.ip_address("::1"), allowed_networks=networks)
    assert not guard.is_allowed(ipaddress.ip_address("10.2.0.1"), allowed_networks=networks)
    assert not guard.is_allowed(ipaddress.ip_address("127.0.0.1"), allowed_networks=networks)


def test_https_goes_through_the_pinned_connection_with_tls(tmp_path):
    """TLS on the checked address: certificate checks apply to the name; off, a self-signed server works."""
    import datetime
    import ssl
    import threading
    from http.server import ThreadingHTTPServer

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            send_bytes(b"over tls")(self)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    out = tmp_path / "out"
    out.mkdir()
    try:
        uri = f"https://localhost:{httpd.server_address[1]}/x"
        with pytest.raises(FetchError) as caught:
            fetch(uri, out / "a", policy=loopback_policy())
        assert caught.value.code == "fetch_failed" and "CERTIFICATE_VERIFY_FAILED" in caught.value.message
        unchecked = loopback_policy().with_download_options({"https_certificate_check": False})
        assert fetch(uri, out / "a", policy=unchecked) == 8
        assert (out / "a").read_bytes() == b"over tls"
    finally:
        httpd.shutdown()
        httpd.server_close()


# ---- s3 ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", region_name="eu-west-1", endpoint_url=endpoint, aws_access_key_id="AKIDTEST", aws_secret_access_key="sekrit/key+1")
    client.create_bucket(Bucket="masters", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    client.put_object(Bucket="masters", Key="season 1/ep #1.mp4", Body=PAYLOAD)
    yield endpoint
    server.stop()


def test_s3_fetch_through_the_uri_endpoint(s3_endpoint, tmp_path):
    base = f"s3://AKIDTEST:sekrit%2Fkey%2B1@eu-west-1/masters/?endpoint={s3_endpoint}"
    uri = resolve(base, "season 1/ep #1.mp4")
    assert uri == f"s3://AKIDTEST:sekrit%2Fkey%2B1@eu-west-1/masters/season%201/ep%20%231.mp4?endpoint={s3_endpoint}"
    assert fetch(uri, tmp_path / "in.mp4", policy=loopback_policy()) == len(PAYLOAD)
    assert (tmp_path / "in.mp4").read_bytes() == PAYLOAD


def test_s3_fetch_through_the_endpoint_setting(s3_endpoint, tmp_path):
    uri = "s3://AKIDTEST:sekrit%2Fkey%2B1@eu-west-1/masters/season%201/ep%20%231.mp4"
    assert fetch(uri, tmp_path / "in.mp4", policy=loopback_policy(s3_endpoint_url=s3_endpoint)) == len(PAYLOAD)
    assert (tmp_path / "in.mp4").read_bytes() == PAYLOAD


def test_s3_missing_key_is_not_found_without_the_keys_in_the_message(s3_endpoint, tmp_path):
    uri = f"s3://AKIDTEST:sekrit%2Fkey%2B1@eu-west-1/masters/nope.mp4?endpoint={s3_endpoint}"
    with pytest.raises(FetchError) as caught:
        fetch(uri, tmp_path / "a", policy=loopback_policy())
    assert caught.value.code == "not_found"
    for secret in ("AKIDTEST", "sekrit", "key%2B1", "key+1"):
        assert secret not in str(caught.value)
    assert leftovers(tmp_path) == []


def test_s3_endpoint_behind_the_guard(s3_endpoint, tmp_path):
    uri = f"s3://AKIDTEST:sekrit@eu-west-1/masters/x?endpoint={s3_endpoint}"
    with pytest.raises(FetchError) as caught:
        fetch(uri, tmp_path / "a", policy=FetchPolicy())
    assert caught.value.code == "refused_address"


# ---- sftp --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sftp_port(tmp_path_factory):
    root = tmp_path_factory.mktemp("sftp-root")
    (root / "in").mkdir()
    (root / "in" / "title.mp4").write_bytes(PAYLOAD)
    with sftp_server(root, login="encoder", password="p@ss:word", host_key=paramiko.RSAKey.generate(2048)) as port:
        yield port


def test_sftp_fetch(sftp_port, tmp_path):
    uri = resolve(f"sftp://encoder:p%40ss%3Aword@127.0.0.1:{sftp_port}/in/", "title.mp4")
    seen = []
    assert fetch(uri, tmp_path / "in.mp4", policy=loopback_policy(), progress=lambda d, t: seen.append(t)) == len(PAYLOAD)
    assert (tmp_path / "in.mp4").read_bytes() == PAYLOAD
    assert set(seen) == {len(PAYLOAD)}


def test_sftp_failures(sftp_port, tmp_path):
    with pytest.raises(FetchError) as missing:
        fetch(f"sftp://encoder:p%40ss%3Aword@127.0.0.1:{sftp_port}/in/none.mp4", tmp_path / "a", policy=loopback_policy())
    with pytest.raises(FetchError) as login:
        fetch(f"sftp://encoder:guessed-pw@127.0.0.1:{sftp_port}/in/title.mp4", tmp_path / "a", policy=loopback_policy())
    assert (missing.value.code, login.value.code) == ("not_found", "fetch_failed")
    assert "guessed-pw" not in str(login.value) and "encoder" not in str(login.value)
    assert leftovers(tmp_path) == []


# ---- file:// -------------------------------------------------------------------------------------------


def test_local_folders(tmp_path):
    inbox, elsewhere, out = tmp_path / "inbox", tmp_path / "elsewhere", tmp_path / "out"
    for folder in (inbox, elsewhere, out):
        folder.mkdir()
    (inbox / "clip one.mp4").write_bytes(b"inside")
    (elsewhere / "secret.txt").write_bytes(b"outside")
    (inbox / "link.mp4").symlink_to(elsewhere / "secret.txt")
    (inbox / "dir-link").symlink_to(elsewhere)
    policy = FetchPolicy(local_dirs=(inbox,))

    assert fetch((inbox / "clip one.mp4").as_uri(), out / "a", policy=policy) == 6
    for uri in (
        (elsewhere / "secret.txt").as_uri(),
        (inbox / "link.mp4").as_uri(),
        (inbox / "dir-link" / "secret.txt").as_uri(),
        f"file://{inbox}/../elsewhere/secret.txt",
        "file:///etc/passwd",
        f"file://otherhost{inbox}/clip%20one.mp4",
    ):
        with pytest.raises(FetchError) as caught:
            fetch(uri, out / "b", policy=policy)
        assert caught.value.code == "refused_address", uri
    with pytest.raises(FetchError) as missing:
        fetch((inbox / "absent.mp4").as_uri(), out / "b", policy=policy)
    assert missing.value.code == "not_found"
    with pytest.raises(FetchError) as nul:
        fetch(f"file://{inbox}/clip%00one.mp4", out / "b", policy=policy)
    assert nul.value.code == "invalid_uri"
    with pytest.raises(FetchError) as none_allowed:
        fetch((inbox / "clip one.mp4").as_uri(), out / "b", policy=FetchPolicy())
    assert none_allowed.value.code == "refused_address"
    assert leftovers(out) == ["a"]


def test_the_default_local_folder_is_the_inbox(tmp_path):
    policy = FetchPolicy.from_settings(Settings(data_dir=tmp_path))
    assert policy.local_dirs == ((tmp_path / "inbox").resolve(),)
    assert FetchPolicy.from_settings(Settings(data_dir=tmp_path, fetch_local_dirs="")).local_dirs == ()


# ---- names, URIs, redaction ------------------------------------------------------------------------------


def test_resolve_joins_names_and_refuses_escapes():
    assert resolve("https://cdn.example.com/masters", "a/b c.mp4") == "https://cdn.example.com/masters/a/b%20c.mp4"
    assert resolve("https://u:p@cdn.example.com/", "x.mp4") == "https://u:p@cdn.example.com/x.mp4"
    assert resolve(None, "uploads/x.mp4") is None
    assert resolve("https://cdn.example.com/", "sftp://h/x.mp4") == "sftp://h/x.mp4"
    assert resolve_logo("https://cdn.example.com/logos/", "brand.png") == "https://cdn.example.com/logos/brand.png"
    for name in ("../x.mp4", "a/../../x.mp4", "%2e%2e/x.mp4", "/etc/passwd", "a\\..\\x"):
        with pytest.raises(FetchError) as caught:
            resolve("https://cdn.example.com/dir/", name)
        assert caught.value.code == "path_escape", name
    with pytest.raises(FetchError) as logo:
        resolve_logo("https://cdn.example.com/", "../x.png")
    assert "logo_image" in logo.value.message
    for uri in ("gopher://h/x", "https:///x", "http://h:99999/x"):
        with pytest.raises(FetchError) as caught:
            resolve(None, uri)
        assert caught.value.code == "invalid_uri", uri


def test_redact():
    assert redact("s3://AKIA123:sec%2Fret@eu-west-1/b/k.mp4") == "s3://***@eu-west-1/b/k.mp4"
    assert redact("sftp://login:pw@host:2222/in/x") == "sftp://***@host:2222/in/x"
    assert redact("https://user@h/x") == "https://***@h/x"
    assert redact("https://h/x.mp4") == "https://h/x.mp4"
    assert (
        redact("https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=ab12&size=3")
        == "https://b.s3.amazonaws.com/k?X-Amz-Credential=***&X-Amz-Signature=***&size=3"
    )
    assert redact("s3://k:s@r/b/x?endpoint=http://minio:9000") == "s3://***@r/b/x?endpoint=http://minio:9000"
    assert redact("http://[::1") == "***"


def test_error_codes_are_the_documented_ones():
    assert fetching.CODES == ("fetch_failed", "refused_address", "not_found", "path_escape", "invalid_uri", "too_large", "cancelled")
    with pytest.raises(ValueError):
        FetchError("whatever", "x")
