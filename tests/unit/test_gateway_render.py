"""The gateway config: it renders, nginx accepts it, and a real nginx routes as docs/api.md, "The gateway", says.

The upstreams are small threaded HTTP servers that answer with the path and Origin header they
saw, so routing, keep-alive headers and the JSON bodies of nginx's own errors are all checked
against a running nginx (started from the rendered config, in its own run directory).
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from rideshare.config import Settings
from rideshare.gateway.render import nginx_binary, nginx_command, render_config, render_text
from rideshare.localhost import free_port

pytestmark = pytest.mark.skipif(
    not Path(nginx_binary()).exists(), reason="nginx is not installed"
)


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    name = "?"

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({
            "upstream": self.name, "path": self.path, "origin": self.headers.get("Origin"),
            "connection": self.headers.get("Connection"),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass


def _serve(name: str) -> tuple[ThreadingHTTPServer, str]:
    handler = type(f"Echo_{name}", (_Echo,), {"name": name})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"127.0.0.1:{server.server_address[1]}"


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"nginx exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)  # polling a port, not synchronising on a guess
    raise AssertionError("nginx did not start listening")


def _settings(port: int) -> Settings:
    return Settings(host="127.0.0.1", gateway_port=port)


def test_rendered_config_is_standalone(tmp_path: Path) -> None:
    text = render_text(_settings(18080), tmp_path, ["127.0.0.1:1"], ["127.0.0.1:2", "127.0.0.1:3"])
    assert "daemon off;" in text
    assert f"pid {tmp_path.resolve()}/nginx.pid;" in text
    assert "/etc/nginx" not in text and "/var/log" not in text
    assert "listen 127.0.0.1:18080;" in text
    assert "server 127.0.0.1:2;" in text and "server 127.0.0.1:3;" in text
    assert "keepalive 64;" in text and 'proxy_set_header Connection "";' in text
    assert "@@" not in text


def test_ipv6_listen_address_is_bracketed(tmp_path: Path) -> None:
    settings = Settings(host="::1", gateway_port=18080)
    assert "listen [::1]:18080;" in render_text(settings, tmp_path, ["[::1]:1"], ["[::1]:2"])


@pytest.mark.parametrize("bad", ["", "127.0.0.1", "a:1; evil", "h:1\nserver x:2"])
def test_upstreams_must_be_host_port(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        render_text(_settings(18080), tmp_path, [bad], ["127.0.0.1:2"])


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    conf = render_config(_settings(free_port()), tmp_path, ["127.0.0.1:1"], ["127.0.0.1:2"])
    result = subprocess.run(nginx_command(conf, test=True), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    users, users_addr = _serve("users")
    rides, rides_addr = _serve("rides")
    port = free_port()
    run_dir = tmp_path_factory.mktemp("gateway")
    conf = render_config(_settings(port), run_dir, [users_addr], [rides_addr, rides_addr])
    proc = subprocess.Popen(nginx_command(conf), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        _wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        users.shutdown()
        rides.shutdown()
    assert (run_dir / "nginx-error.log").exists()


@pytest.mark.parametrize(
    ("path", "upstream"),
    [
        ("/api/v1/users", "users"),
        ("/api/v1/users/alice", "users"),
        ("/api/v1/users/a%2Fb", "users"),
        ("/api/v1/usersX", "rides"),
        ("/api/v1/rides", "rides"),
        ("/api/v1/rides/7", "rides"),
        ("/api/v1/_count", "rides"),
        ("/api/v1/anything", "rides"),
        ("/api/v1/dbx", "rides"),
    ],
)
def test_routing(gateway: str, path: str, upstream: str) -> None:
    response = httpx.get(gateway + path, headers={"Origin": "rideshare-test"})
    assert response.status_code == 200
    seen = response.json()
    assert seen["upstream"] == upstream
    assert seen["path"] == path  # passed on as the client sent it
    assert seen["origin"] == "rideshare-test"
    assert seen["connection"] is None  # keep-alive upstream: no "Connection: close"


@pytest.mark.parametrize(
    "path",
    ["/api/v1/db/clear", "/api/v1/db/write", "/api/v1/db", "/api/v1/crash/master",
     "/api/v1/worker/list", "/api/v1/users/../db/clear", "/api/v1/rides/%2e%2e/db/read",
     "/api/v1/rides/..%2Fdb%2Fclear", "/api/v1//db/clear", "/metrics", "/dashboard",
     "/dashboard/events", "/api/v1/cluster", "/api/v1/cluster/history", "/api/v1/users/../../metrics",
     "/api/v1/users/../../../metrics", "/api/v1/rides/../dashboard"],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_admin_paths_are_refused_with_json(gateway: str, path: str, method: str) -> None:
    response = httpx.request(method, gateway + path)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/json")
    assert "error" in response.json()


def test_bodies_over_one_mib_are_413_json(gateway: str) -> None:
    response = httpx.post(gateway + "/api/v1/rides", content=b"x" * (1024 * 1024 + 1))
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/json")
    assert "1 MiB" in response.json()["error"]


def test_body_of_one_mib_passes(gateway: str) -> None:
    response = httpx.post(gateway + "/api/v1/rides", content=b"x" * (1024 * 1024))
    assert response.status_code == 200


def _raw(gateway: str, request: bytes) -> tuple[bytes, dict[str, str], bytes]:
    """Send bytes no HTTP client library would send; returns status line, headers, body."""
    host, port = gateway.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /api/v1/users HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 400),
        (b"POST /api/v1/rides HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
         b"Connection: close\r\n\r\n100001\r\n" + b"a" * 0x100001 + b"\r\n0\r\n\r\n", 413),
        (b"GET /_gateway_error/500 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404),
    ],
)
def test_nginx_own_errors_are_json(gateway: str, request_bytes: bytes, status: int) -> None:
    status_line, headers, body = _raw(gateway, request_bytes)
    assert status_line.split()[1] == str(status).encode()
    assert headers["content-type"].startswith("application/json")
    assert "error" in json.loads(body)


def test_upstream_down_is_502_json(tmp_path: Path) -> None:
    port = free_port()
    conf = render_config(_settings(port), tmp_path,
                         [f"127.0.0.1:{free_port()}"], [f"127.0.0.1:{free_port()}"])
    proc = subprocess.Popen(nginx_command(conf), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, proc)
        response = httpx.get(f"http://127.0.0.1:{port}/api/v1/users")
        assert response.status_code == 502
        assert response.headers["content-type"].startswith("application/json")
        assert "error" in response.json()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
