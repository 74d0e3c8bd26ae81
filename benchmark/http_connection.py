"""HTTP/1.1 for the load generator: one kept-alive socket, requests sent as prepared bytes, every
exchange bounded in size (`MAX_ANSWER_BYTES`) and in time (one deadline for all its reads), a
request never sent twice (a connection the server closed while idle is opened again first)."""

from __future__ import annotations

import socket
import time

from toolkit.files import parse_json

from .answers import AnswerError

REQUEST_TIMEOUT_S = 60.0  # one request (a ResNet-50 batch of 64 on two cores takes ~3 s)
MAX_ANSWER_BYTES = 64 << 20  # an answer larger than this is refused (ResNet-50 logits of 4096 images: 16 MB)


class _ClosedBeforeAnswer(ConnectionError):
    """The server closed the connection before any byte of an answer."""


class HttpConnection:
    """HTTP/1.1 on one kept-alive socket, requests sent as prepared bytes: what a request costs
    the client is a `sendall` and reading the answer (~25 us of CPU, against ~80 us through
    `http.client`: on two cores shared with the server, that difference is the server's). An
    exchange has one deadline for all its reads, and an answer at most `MAX_ANSWER_BYTES`."""

    def __init__(self, url: str, timeout: float = REQUEST_TIMEOUT_S) -> None:
        import urllib.parse

        address = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        self.host, self.port = address.hostname or "127.0.0.1", address.port or 80
        self.prefix = address.path.rstrip("/")
        self.timeout = self.limit = timeout
        self.socket: socket.socket | None = None
        self.buffer = bytearray()

    def request_bytes(self, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> bytes:
        lines = [f"{method} {self.prefix}{path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()] + [f"Content-Length: {len(body)}", "", ""]
        return "\r\n".join(lines).encode() + body

    def exchange(self, request: bytes, timeout: float | None = None) -> tuple[int, dict, bytes]:
        """(status, headers in lower case, body) of one prepared request, within `timeout` s (the
        connection's own by default). A kept-alive connection the server has closed while idle is
        opened again before the request is sent; a request is never sent twice (the server may
        have acted on it)."""
        self.limit = timeout or self.timeout
        deadline = time.monotonic() + self.limit
        if self.socket is not None and self._closed_by_the_server():
            self.close()
        try:
            if self.socket is None:
                self._open(deadline)
            self._send(request, deadline)
            return self._answer(deadline)
        except _ClosedBeforeAnswer:
            self.close()
            raise ConnectionError("the server closed the connection without answering") from None
        except BaseException:
            self.close()
            raise

    def _closed_by_the_server(self) -> bool:
        """Whether the idle socket has been closed by the server (or holds bytes nobody asked for)."""
        import select

        try:
            readable, _, _ = select.select([self.socket], [], [], 0)
            return bool(readable) or bool(self.buffer)  # an end of file, or bytes nobody asked for
        except (OSError, ValueError):
            return True

    def _open(self, deadline: float) -> None:
        self.socket = socket.create_connection((self.host, self.port), timeout=self._left(deadline))
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()

    def _left(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no whole answer within {self.limit:g} s")
        return left

    def _send(self, request: bytes, deadline: float) -> None:
        self.socket.settimeout(self._left(deadline))
        try:
            self.socket.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            raise _ClosedBeforeAnswer() from None

    def _receive(self, deadline: float) -> bytes:
        self.socket.settimeout(self._left(deadline))
        try:
            data = self.socket.recv(1 << 20)
        except TimeoutError:
            raise TimeoutError(f"no whole answer within {self.limit:g} s") from None
        except ConnectionResetError:
            data = b""
        return data

    def _line(self, deadline: float, first: bool = False) -> bytes:
        while (end := self.buffer.find(b"\n")) < 0:
            if len(self.buffer) > 65536:
                raise AnswerError("the answer has a header line over 64 KiB")
            data = self._receive(deadline)
            if not data:
                if first and not self.buffer:
                    raise _ClosedBeforeAnswer()
                raise AnswerError("the server closed the connection inside its answer's headers")
            self.buffer += data
        line = bytes(self.buffer[: end + 1])
        del self.buffer[: end + 1]
        return line

    def _exactly(self, size: int, deadline: float) -> bytes:
        while len(self.buffer) < size:
            data = self._receive(deadline)
            if not data:
                raise AnswerError(
                    f"the server closed the connection {size - len(self.buffer)} bytes before its answer's end"
                )
            self.buffer += data
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def _to_close(self, deadline: float) -> bytes:
        while data := self._receive(deadline):
            self.buffer += data
            if len(self.buffer) > MAX_ANSWER_BYTES:
                raise AnswerError(f"the answer is over {MAX_ANSWER_BYTES >> 20} MB")
        data, self.buffer = bytes(self.buffer), bytearray()
        return data

    def _answer(self, deadline: float) -> tuple[int, dict, bytes]:
        status = self._line(deadline, first=True).split(None, 2)
        if len(status) < 2 or not status[0].startswith(b"HTTP/1.") or not status[1].isdigit() or len(status[1]) != 3:
            raise AnswerError("the server's answer is not HTTP/1.1")
        headers = {}
        while (line := self._line(deadline)) not in (b"\r\n", b"\n"):
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
            if len(headers) > 100:
                raise AnswerError("the answer has over 100 headers")
        body = self._body(int(status[1]), headers, deadline)
        if headers.get("connection", "").lower() == "close":
            self.close()
        return int(status[1]), headers, body

    def _body(self, status: int, headers: dict, deadline: float) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            return self._chunked(deadline)
        length = headers.get("content-length")
        if length is not None:
            if not length.isascii() or not length.isdigit():
                raise AnswerError(f"the answer's Content-Length {length[:20]!r} is not a size")
            if int(length) > MAX_ANSWER_BYTES:
                raise AnswerError(f"the answer is {int(length):,} bytes, over {MAX_ANSWER_BYTES >> 20} MB")
            return self._exactly(int(length), deadline)
        if status < 200 or status in (204, 304):
            return b""
        body = self._to_close(deadline)  # neither length nor chunks: the body ends with the connection
        self.close()
        return body

    def _chunked(self, deadline: float) -> bytes:
        body = bytearray()
        while True:
            size = self._line(deadline).split(b";")[0].strip()
            if not size or len(size) > 16 or any(c not in b"0123456789abcdefABCDEF" for c in size):
                raise AnswerError("the answer's chunk size is not a hexadecimal size")
            if int(size, 16) == 0:
                while self._line(deadline) not in (b"\r\n", b"\n"):
                    pass
                return bytes(body)
            if len(body) + int(size, 16) > MAX_ANSWER_BYTES:
                raise AnswerError(f"the answer is over {MAX_ANSWER_BYTES >> 20} MB")
            body += self._exactly(int(size, 16) + 2, deadline)[:-2]

    def close(self) -> None:
        """Closes the socket (a request blocked on it, in another thread, ends at once)."""
        sock, self.socket = self.socket, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


def read_json(data: bytes, what: str):
    """A JSON document of an answer, or an `AnswerError` (not JSON, or nested past Python's parser)."""
    return parse_json(data, what, "an answer", AnswerError)
