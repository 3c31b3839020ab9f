"""A real HTTP server on loopback that records webhook POSTs and answers scripted statuses."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    port: int
    statuses: list[int] = field(default_factory=list)  # answers in order; 200 once exhausted
    received: list[Received] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        try:
            while len(self.received) < count and not deadline.is_set():
                self.arrived.wait(0.05)
                self.arrived.clear()
        finally:
            timer.cancel()
        return list(self.received)


@contextmanager
def http_receiver() -> Iterator[Receiver]:
    lock = threading.Lock()
    box: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            rec = box[0]
            with lock:
                rec.received.append(Received(self.path, dict(self.headers.items()), body))
                status = rec.statuses.pop(0) if rec.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            rec.arrived.set()

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    box.append(Receiver(url=f"http://127.0.0.1:{port}/hooks/reframe?src=test", port=port))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class Trickler:
    url: str
    connections: int = 0
    connected: threading.Event = field(default_factory=threading.Event)


@contextmanager
def trickling_receiver(interval: float = 0.5) -> Iterator[Trickler]:
    """A receiver that takes the request, then answers one byte every `interval` seconds and
    never finishes: every read of it succeeds, so per-socket timeouts never fire."""
    import socket

    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    box = Trickler(f"http://127.0.0.1:{listener.getsockname()[1]}/hook")

    def trickle(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(1.0)
            try:
                conn.recv(65536)
                box.connected.set()
                for byte in b"HTTP/1.1 200 OK\r\n" * 10_000:
                    if stop.wait(interval):
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                return  # the sender gave up and closed its end

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            box.connections += 1
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        yield box
    finally:
        stop.set()
        server.join(timeout=5)
        listener.close()
