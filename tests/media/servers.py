"""Real servers on loopback for the fetch and ping tests: HTTP (with redirects), SFTP.

The HTTP server runs `http.server` in a thread; routes are added per test as handler functions.
The SFTP server is paramiko's server side in a thread, serving one folder read-only with one
login; it implements only what a download needs (stat, open, read).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import paramiko

Route = Callable[[BaseHTTPRequestHandler], None]


class HTTPTestServer:
    """A loopback HTTP server: `routes[path]` answers GET and POST to that path."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []  # method, path, headers, body
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                server.requests.append((self.command, self.path, dict(self.headers.items()), body))
                route = server.routes.get(self.path.split("?")[0])
                if route is None:
                    self.send_error(404)
                    return
                route(self)

            do_GET = _handle
            do_POST = _handle

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str, *, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def __enter__(self) -> HTTPTestServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def send_bytes(data: bytes, *, status: int = 200, headers: dict[str, str] | None = None) -> Route:
    """A route answering `data` with a Content-Length."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    return route


def redirect(location: str, *, status: int = 302) -> Route:
    """A route redirecting to `location`."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return route


# ---- SFTP ------------------------------------------------------------------------------------------


class _Auth(paramiko.ServerInterface):
    def __init__(self, login: str, password: str) -> None:
        self.login, self.password = login, password

    def check_auth_password(self, username: str, password: str) -> int:
        ok = (username, password) == (self.login, self.password)
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def get_allowed_auths(self, username: str) -> str:
        return "password"

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


class _Handle(paramiko.SFTPHandle):
    def stat(self) -> paramiko.SFTPAttributes:
        return paramiko.SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))


def _folder_sftp(root: Path) -> type[paramiko.SFTPServerInterface]:
    class Folder(paramiko.SFTPServerInterface):
        def _real(self, path: str) -> Path:
            return root / path.lstrip("/")

        def stat(self, path: str) -> paramiko.SFTPAttributes | int:
            try:
                return paramiko.SFTPAttributes.from_stat(self._real(path).stat())
            except OSError as exc:
                return paramiko.SFTPServer.convert_errno(exc.errno)

        lstat = stat

        def open(self, path: str, flags: int, attr: paramiko.SFTPAttributes) -> _Handle | int:
            try:
                handle = _Handle(flags)
                handle.readfile = self._real(path).open("rb")
                return handle
            except OSError as exc:
                return paramiko.SFTPServer.convert_errno(exc.errno)

    return Folder


@contextmanager
def sftp_server(root: Path, *, login: str, password: str, host_key: paramiko.PKey) -> Iterator[int]:
    """Serve `root` over SFTP on a loopback port (yielded) until the block ends."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    transports: list[paramiko.Transport] = []

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            transport = paramiko.Transport(conn)
            transport.add_server_key(host_key)
            transport.set_subsystem_handler("sftp", paramiko.SFTPServer, _folder_sftp(root))
            transport.start_server(server=_Auth(login, password))
            transports.append(transport)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        listener.close()
        for transport in transports:
            transport.close()
