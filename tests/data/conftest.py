"""Shared fixtures of the data tests: generated stand-ins and a local HTTP file server."""

from __future__ import annotations

import http.server
import threading
from collections import Counter
from pathlib import Path

import pytest

from itnas.data.synthetic import generate


@pytest.fixture(scope="session")
def standin_root(tmp_path_factory) -> Path:
    """A read-only root with synthetic-cifar10 and synthetic-imagenet; copy before changing."""
    root = tmp_path_factory.mktemp("standins")
    generate("synthetic-cifar10", root)
    generate("synthetic-imagenet", root)
    return root


class FileServer:
    """Serves `files` (name -> bytes) on 127.0.0.1; can cut bodies short to test retries."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: Counter[str] = Counter()
        self.cut_short: dict[str, int] = {}  # name -> how many more responses to cut short
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                name = self.path.lstrip("/")
                server.requests[name] += 1
                body = server.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_short.get(name, 0) > 0:
                    server.cut_short[name] -= 1
                    # Promise the whole body, send half, hang up: an interrupted download.
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def file_server():
    server = FileServer()
    try:
        yield server
    finally:
        server.close()
