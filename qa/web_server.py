"""Serving the page: a uvicorn server around Gradio, behind the HostGuard.

The server answers only requests addressed to a host name it was started for (127.0.0.1,
localhost, ::1 and ``--host``) and coming from no other web origin: anything else gets
HTTP 403 before Gradio sees it, which shuts out DNS rebinding and cross-site requests.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import socket
from urllib.parse import urlsplit

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when Gradio is imported

import gradio as gr  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from starlette.datastructures import Headers  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402

from qa.datatypes import QAError  # noqa: E402
from qa.options import HOST, PORT  # noqa: E402
from qa.web_page import CSS, HEAD  # noqa: E402
from qa.web_uploads import MAX_UPLOAD_BYTES  # noqa: E402

CONCURRENCY = 4  # questions answered at the same time
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")  # always accepted as the Host of a request
WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # --host values that listen on every interface

THEME = gr.themes.Soft(
    primary_hue="blue",
    font=["system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"],
)


def launch(demo: gr.Blocks, host: str = HOST, port: int = PORT) -> None:
    """Serve ``demo`` on ``host``:``port`` until stopped (Ctrl+C or SIGTERM); OSError when the port is taken."""
    server, sock = make_server(demo, host, port)
    print(f"* Running on local URL:  {local_url(host, sock.getsockname()[1])}", flush=True)
    server.run(sockets=[sock])


class PortInUse(QAError, OSError):
    """The port is taken: one line saying how to start on another."""


def check_port(host: str = HOST, port: int = PORT) -> None:
    """PortInUse, naming a free port to use instead, when ``host``:``port`` cannot be bound."""
    try:
        _bind(host, port).close()
    except OSError as e:
        if e.errno != errno.EADDRINUSE:
            raise
        free = _free_port(host, port)
        raise PortInUse(f"port {port} is in use (another `qa serve`?): start on another port with "
                        f"`--port {free}` (`make run ARGS=\"--port {free}\"`, or GRADIO_SERVER_PORT={free})") from e


def _free_port(host: str, port: int) -> int:
    """The first port after ``port`` that can be bound (or any free one)."""
    for candidate in range(port + 1, min(port + 100, 65536)):
        try:
            _bind(host, candidate).close()
            return candidate
        except OSError:
            continue
    with _bind(host, 0) as sock:
        return sock.getsockname()[1]


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def make_server(demo: gr.Blocks, host: str = HOST, port: int = PORT) -> tuple[uvicorn.Server, socket.socket]:
    """A server for ``demo`` and its socket, already bound (port 0: any free port); OSError when taken.

    Run it with ``server.run(sockets=[sock])``; set ``server.should_exit`` to stop it.
    """
    sock = _bind(host, port)
    config = uvicorn.Config(asgi_app(demo, host, port), log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=3)  # then open event streams (browser tabs) are cut
    return uvicorn.Server(config), sock


def asgi_app(demo: gr.Blocks, host: str = HOST, port: int = PORT) -> HostGuard:
    """The page as an ASGI app: Gradio mounted at / of a FastAPI app, behind the HostGuard."""
    demo.queue(default_concurrency_limit=CONCURRENCY)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    gr.mount_gradio_app(app, demo, "/", server_name=host, server_port=port, theme=THEME, css=CSS, head=HEAD,
                        max_file_size=MAX_UPLOAD_BYTES, footer_links=["api"], show_error=False)
    return HostGuard(app, host)


def local_url(host: str, port: int) -> str:
    """The address to open the page at, for the log."""
    name = "localhost" if host in WILDCARD_HOSTS else host
    return f"http://[{name}]:{port}/" if ":" in name else f"http://{name}:{port}/"


class HostGuard:
    """ASGI middleware: HTTP 403, before the app sees it, for a request this server must not answer.

    The Host header must name this server: 127.0.0.1, localhost, ::1 or the host it was
    started for (any port). A page on another site whose name an attacker points at this
    machine (DNS rebinding) sends its own name as Host, so it is shut out. When the server
    listens on every interface (--host 0.0.0.0 or ::), the machine's own name and any IP
    address are accepted too: rebinding needs a DNS name, and the page must stay reachable
    from other machines. A request that carries an Origin header (browsers send one with
    cross-site and most same-site requests) must come from a page of this very server, so
    no other site gets an answer or a CORS header allowing it to read one.
    """

    def __init__(self, app, host: str = HOST):
        self.app = app
        self.names = {_normal_host(n) for n in (*LOOPBACK_NAMES, host) if n not in WILDCARD_HOSTS}
        self.any_ip = host in WILDCARD_HOSTS
        if self.any_ip:
            self.names.add(_normal_host(socket.gethostname()))

    def refusal(self, headers: Headers) -> str | None:
        """Why a request with these headers is refused; None when it is accepted."""
        hosts = headers.getlist("host")
        if len(hosts) != 1:
            return "one Host header expected"
        host = hosts[0].strip().lower()
        name = _host_name(host)
        if name is None or not (name in self.names or (self.any_ip and _is_ip(name))):
            return "unknown host"
        for origin in headers.getlist("origin"):
            parts = _split_origin(origin)
            if parts is None or parts[1] != host:
                return "cross-origin request"
        return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket"):
            why = self.refusal(Headers(scope=scope))
            if why is not None:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                await PlainTextResponse(f"Forbidden: {why}.", status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


_HOST_HEADER = re.compile(r"(\[[0-9a-f:.]+\]|[^\s/\\?#@:\[\]]+)(?::[0-9]{1,5})?")


def _host_name(host: str) -> str | None:
    """The host name of a Host header value (lower-case, IPv6 without brackets); None when malformed."""
    m = _HOST_HEADER.fullmatch(host.lower())
    return _normal_host(m.group(1)) if m else None


def _normal_host(name: str) -> str:
    name = name.lower().strip("[]")
    try:
        return ipaddress.ip_address(name).compressed
    except ValueError:
        return name


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _split_origin(origin: str) -> tuple[str, str] | None:
    """(scheme, host[:port]) of an Origin header, lower-case; None for "null" or anything malformed."""
    try:
        parts = urlsplit(origin.strip().lower())
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query or parts.fragment:
        return None
    return parts.scheme, parts.netloc
