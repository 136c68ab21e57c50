"""Fake servers for the client tests: a raw socket that answers one connection as told.

What a hostile or broken server might send, byte for byte, without a real
server's rules in the way.
"""

from __future__ import annotations

import email.message
import hashlib
import http.client
import io
import socket
import threading
from dataclasses import dataclass
from typing import Callable, Optional

from contextthreads import ContextThread
from contextthreads.fluster._wire import NONCE_HEADER, check_request_head

from .support import SECRET, WAIT, joined


@dataclass
class Request:
    """A request as a fake server read it."""

    line: str
    headers: email.message.Message
    body: bytes

    @property
    def nonce(self) -> bytes:
        """The request's nonce (a stream's client nonce)."""
        return bytes.fromhex(self.headers[NONCE_HEADER])

    def signed_for(self, host: str) -> bool:
        """Return whether the request is signed with SECRET for ``host``, body included."""
        method, path, _ = self.line.split(" ", 2)
        head = check_request_head(SECRET, method, path, self.headers, frozenset([host]))
        return not isinstance(head, str) and head.digest == hashlib.sha256(self.body).hexdigest()


Answer = Callable[[socket.socket, io.BufferedReader, Request], None]


def read_request(reader: io.BufferedReader) -> Request:
    """Read one HTTP request (head and Content-Length body); an empty one at end of stream."""
    line = reader.readline(65537).decode("latin-1").rstrip("\r\n")
    headers = http.client.parse_headers(reader)
    body = reader.read(int(headers.get("Content-Length", "0")))
    return Request(line, headers, body)


def answer_bytes(status_line: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    """Return an answer's bytes: status line, headers, blank line, body."""
    head = status_line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode("latin-1") + body


class FakeServer:
    """A raw listening socket on 127.0.0.1; ``answer`` handles its one connection on a thread.

    On leaving the block the thread is joined (bounded); errors it met fail the
    test unless the block itself failed.
    """

    def __init__(self, answer: Answer) -> None:
        self._answer = answer
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(WAIT)
        self.address = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        #: The ``host:port`` requests to the fake are signed for.
        self.netloc = self.address.split("//", 1)[1]
        self._accepted = threading.Event()
        self.errors: list[BaseException] = []
        self.request: Optional[Request] = None
        self._thread = ContextThread(target=self._serve, name="fake-stream-server", daemon=True)

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            if not self._accepted.is_set():
                # Nobody connected (the test failed early): wake the thread up.
                socket.create_connection(self._listener.getsockname(), timeout=WAIT).close()
            joined(self._thread)
        finally:
            self._listener.close()
        if exc_type is None:
            assert self.errors == []

    def _serve(self) -> None:
        try:
            conn, _ = self._listener.accept()
            self._accepted.set()
            with conn:
                conn.settimeout(WAIT)
                with conn.makefile("rb") as reader:
                    self.request = read_request(reader)
                    self._answer(conn, reader, self.request)
        except BaseException as exc:
            self.errors.append(exc)


def reply_with(data: bytes) -> Answer:
    """Return an answer that writes ``data`` and hangs up."""

    def answer(conn: socket.socket, reader: io.BufferedReader, request: Request) -> None:
        conn.sendall(data)

    return answer
