"""The HTTP server: uvicorn with h11, on a socket bound before the model is loaded.

uvicorn answers some requests itself, before the app sees them: malformed HTTP (400) and
requests over its `limit_concurrency` (503), both in plain text. `JsonH11Protocol` makes
those answers JSON like every other, refuses request heads over the size limit however they
arrive (431), and gives each connection a deadline for sending its request line and
headers, which uvicorn does not have (a client that opens connections and sends nothing, or
a byte at a time, would otherwise hold them forever).
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import sys
import threading
from pathlib import Path

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from mnistlab.errors import MnistlabError
from mnistlab.serve.limits import HEAD_TIMEOUT_SECONDS, MAX_HEAD_BYTES, Limits

logger = logging.getLogger(__name__)

# Connections waiting to be accepted; a burst of clients beyond it would be refused.
LISTEN_BACKLOG = 128
# Seconds `shutdown()` lets requests in progress finish before cancelling them.
GRACEFUL_SHUTDOWN_SECONDS = 5


class ServeError(MnistlabError):
    """The server cannot start: the address is in use, the host is unknown, ..."""


def _json_error(message: str) -> bytes:
    return json.dumps({"error": message}, separators=(",", ":")).encode("ascii")


class JsonH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with JSON for its own refusals and a request-head deadline."""

    # Seconds a connection has to send a request's head, and the most bytes that head may
    # hold; `Server` sets both from its limits.
    head_timeout = HEAD_TIMEOUT_SECONDS
    max_head_bytes = MAX_HEAD_BYTES

    def __init__(self, config, server_state, app_state, _loop=None):
        super().__init__(config, server_state, app_state, _loop)
        self._head_timer = None
        # uvicorn would answer over-limit requests with plain text; the same check, made in
        # front of the app instead, answers them with JSON.
        limit, self.limit_concurrency = self.limit_concurrency, None
        self.app = _FrontGuard(self.app, limit or sys.maxsize, self.max_head_bytes,
                               self.connections, self.tasks)

    def connection_made(self, transport) -> None:  # noqa: D102 - asyncio API
        super().connection_made(transport)
        self._expect_head()

    def connection_lost(self, exc) -> None:  # noqa: D102
        self._cancel_head_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:  # noqa: D102
        super().on_response_complete()
        if not self.transport.is_closing():
            self._expect_head()

    def send_400_response(self, msg: str) -> None:  # noqa: D102 - uvicorn API
        # h11 refused the bytes (a bad request line or header, a head over the size limit,
        # a TLS hello, a bad Content-Length): answer as uvicorn does, in JSON, and close.
        body = _json_error("the request is not valid HTTP/1.1 (a malformed request line or "
                           "header, or more than the limit of header bytes)")
        try:
            response = h11.Response(status_code=400, reason=b"Bad Request", headers=[
                (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)),
                (b"connection", b"close")])
            self.transport.write(self.conn.send(response) + self.conn.send(h11.Data(data=body))
                                 + self.conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError:
            pass  # h11 will not answer in this state (the request was half answered)
        self.transport.close()

    def _expect_head(self) -> None:
        """Close the connection unless a new request's head arrives in time."""
        self._cancel_head_timer()
        waiting_after = self.cycle

        def check() -> None:
            idle = waiting_after is None or waiting_after.response_complete
            if self.cycle is waiting_after and idle and not self.transport.is_closing():
                self.transport.close()

        self._head_timer = self.loop.call_later(self.head_timeout, check)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None


class _FrontGuard:
    """An ASGI wrapper in front of the app for the limits uvicorn applies, or misses.

    It answers 503 JSON while more than `limit` connections or requests are open
    (`limit_concurrency`, as uvicorn counts them), and 431 JSON for a request line and
    headers over `max_head_bytes`: h11 enforces that limit only on a head that arrives in
    pieces, not on one that arrives in a single read.
    """

    def __init__(self, app, limit: int, max_head_bytes: int, connections: set, tasks: set):
        self.app = app
        self.limit = limit
        self.max_head_bytes = max_head_bytes
        self.connections = connections
        self.tasks = tasks

    async def __call__(self, scope, receive, send) -> None:
        head_bytes = (len(scope.get("raw_path", b"")) + len(scope.get("query_string", b""))
                      + sum(len(name) + len(value) for name, value in scope.get("headers", ())))
        # This request's connection and task are already counted.
        if len(self.connections) > self.limit or len(self.tasks) > self.limit:
            await _send_json(send, 503, f"the server is busy (over {self.limit} connections); "
                                        "try again in a moment", [(b"retry-after", b"1")])
        elif head_bytes > self.max_head_bytes:
            await _send_json(send, 431, "the request line and headers are over the limit of "
                                        f"{self.max_head_bytes:,} bytes")
        else:
            await self.app(scope, receive, send)


async def _send_json(send, status: int, message: str, headers=()) -> None:
    """Answer `{"error": message}` and close the connection."""
    body = _json_error(message)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)),
        *headers, (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on `host:port` (port 0: any free port); `ServeError` if not."""
    where = f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as error:
        raise ServeError(f"cannot listen on {where}: unknown host ({error.strerror})") from None
    sock = socket.socket(family, kind, proto)
    try:
        if sys.platform.startswith("linux"):
            # On Linux this only allows binding over connections in TIME_WAIT (a restart
            # right after Ctrl-C), never sharing a port another server listens on.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise ServeError(f"cannot listen on {where}: the port is in use "
                             "(stop the other server or pick another --port)") from None
        if error.errno == errno.EACCES:
            raise ServeError(f"cannot listen on {where}: permission denied "
                             "(ports below 1024 need privileges; pick another --port)") from None
        raise ServeError(f"cannot listen on {where}: {error.strerror or error}") from None
    return sock


class Server:
    """A run's model served by uvicorn on a bound socket; not serving until `serve_forever`.

    Shaped like the standard library's servers: `serve_forever()` (in a thread, for tests),
    then `shutdown()` from another thread and `server_close()`.
    """

    def __init__(self, sock: socket.socket, predictor, limits: Limits = Limits(),
                 access_log: bool = False):
        import uvicorn

        from mnistlab.serve.app import create_app

        self.socket = sock
        self.predictor = predictor
        self.limits = limits
        self.app = create_app(predictor, limits)
        protocol = type("JsonH11Protocol", (JsonH11Protocol,),
                        {"head_timeout": limits.head_timeout_seconds,
                         "max_head_bytes": limits.max_head_bytes})
        config = uvicorn.Config(
            self.app, http=protocol, loop="asyncio", ws="none", lifespan="off",
            # Leave the process's logging alone; uvicorn's access log, when asked for, is
            # one line per request through the "uvicorn.access" logger.
            log_config=None, access_log=access_log,
            # Requests come straight from clients; no proxy's headers are trusted.
            proxy_headers=False, server_header=False,
            limit_concurrency=limits.max_connections,
            timeout_keep_alive=limits.keep_alive_seconds,
            h11_max_incomplete_event_size=limits.max_head_bytes,
            backlog=LISTEN_BACKLOG, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS)
        self._uvicorn = uvicorn.Server(config)
        self._serving = threading.Lock()
        self._stopped = threading.Event()

    @property
    def server_address(self) -> tuple:
        """(host, port) the socket is bound to."""
        return self.socket.getsockname()

    @property
    def url(self) -> str:
        """The address to open in a browser, e.g. http://127.0.0.1:8000/."""
        host, port = self.server_address[:2]
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}/"

    def serve_forever(self) -> None:
        """Serve until `shutdown()` is called, or Ctrl-C when run in the main thread."""
        with self._serving:
            self._stopped.clear()
            try:
                self._uvicorn.run(sockets=[self.socket])
            finally:
                self._stopped.set()

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop serving (requests in progress may finish) and wait for it to stop."""
        self._uvicorn.should_exit = True
        if self._serving.locked():
            self._stopped.wait(timeout)

    def server_close(self) -> None:
        """Close the listening socket."""
        self.socket.close()


def make_server(run_dir: Path, host: str = "127.0.0.1", port: int = 8000, *,
                limits: Limits = Limits(), access_log: bool = False) -> Server:
    """Bind `host:port` (port 0: any free port), then load `run_dir`'s model; a `Server`.

    The directory is checked and the socket bound before the model (and with it, maybe,
    TensorFlow) is loaded, so a busy port or a wrong directory fails at once. Raises
    `RunError` for a missing or incomplete run and `ServeError` when the address cannot be
    bound.
    """
    from mnistlab.runs import load_run
    from mnistlab.serve.predictor import Predictor

    load_run(run_dir)
    sock = bind_socket(host, port)
    try:
        return Server(sock, Predictor(run_dir), limits, access_log)
    except BaseException:
        sock.close()
        raise


def serve(run_dir: Path, host: str = "127.0.0.1", port: int = 8000, *,
          limits: Limits = Limits(), access_log: bool = False) -> None:
    """Serve `run_dir`'s model at `host:port` until interrupted (Ctrl-C)."""
    server = make_server(run_dir, host, port, limits=limits, access_log=access_log)
    logger.info("serving %s (%s) at %s", server.predictor.run_dir,
                server.predictor.model_name, server.url)
    try:
        server.serve_forever()
    finally:
        server.server_close()
