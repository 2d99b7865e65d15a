"""Servers that misbehave, on 127.0.0.1, for the hostile corpus: one that accepts and never
answers (frozen), one that hangs up at once, one that answers with something that is not
Chroma, and a proxy in front of a real `chroma run` that can be cut mid-request (a server
that dies). Each runs in daemon threads of the process that starts it."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

CHROMA = "import sys; from chromadb.cli.cli import app; sys.argv[0] = 'chroma'; sys.exit(app())"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dead_url() -> str:
    """A port where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}"


class _Listener:
    """Accepts connections in a daemon thread and hands each to `serve`."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        for c in self.held:
            with contextlib.suppress(OSError):
                c.close()


class FrozenServer(_Listener):
    """Accepts, reads, never answers: a server that stopped answering."""

    def serve(self, conn: socket.socket) -> None:
        self.held.append(conn)
        with contextlib.suppress(OSError):
            while conn.recv(65536):
                pass


class ClosingServer(_Listener):
    """Hangs up as soon as a request arrives."""

    def serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.recv(65536)
            conn.close()


class GarbageServer(_Listener):
    """Answers every request with 200 and a body that is not JSON (some other web server)."""

    def serve(self, conn: socket.socket) -> None:
        body = b"<html><body>\nIt works!\n</body></html>\n"
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n"
        with contextlib.suppress(OSError):
            while conn.recv(65536):
                conn.sendall(head % len(body) + body)


class CuttingProxy(_Listener):
    """Forwards to `port` until `cut_after` requests containing `marker` have started, then
    drops every connection and stops listening: a server that died mid-run."""

    def __init__(self, port: int, marker: bytes = b"/upsert", cut_after: int = 2) -> None:
        self.target, self.marker, self.left = port, marker, cut_after
        self.cut = threading.Event()
        super().__init__()

    def serve(self, conn: socket.socket) -> None:
        up = socket.create_connection(("127.0.0.1", self.target))
        self.held += [conn, up]
        threading.Thread(target=self._pipe, args=(up, conn, False), daemon=True).start()
        self._pipe(conn, up, True)

    def _pipe(self, src: socket.socket, dst: socket.socket, requests: bool) -> None:
        with contextlib.suppress(OSError):
            while not self.cut.is_set() and (data := src.recv(65536)):
                if requests and self.marker in data:
                    self.left -= 1
                    if self.left <= 0:
                        self.cut.set()
                        self.close()
                        return
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def start_chroma(path: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """`chroma run` on 127.0.0.1 (from this interpreter's chromadb), waiting until it answers."""
    import chromadb

    port = port or free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHROMA,
            "run",
            "--path",
            str(path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            chromadb.HttpClient(host="127.0.0.1", port=port).heartbeat()
            return proc, url
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"chroma run did not start on {url}") from None
            time.sleep(0.3)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
