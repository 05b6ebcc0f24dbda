"""A scripted card endpoint for the card tests: serves a given JSON body (or 404) on every
GET and counts the requests per path, so a test can count the gateway's card fetches.

The official SDK cannot serve an invalid card or none at all, which is what these tests
need; everything that calls an agent in them still goes to the real SDK agents.
"""

from __future__ import annotations

import json
import threading

from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class CardServer:
    """`with CardServer(body) as s:` serves `body` (None: 404) at every path on `s.url`."""

    def __init__(self, body: Any = None) -> None:
        self.body = body
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                with server._lock:
                    server.hits[self.path] += 1
                    body = server.body
                if body is None:
                    self.send_response(404)
                    self.send_header('Content-Length', '0')
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self._httpd.server_address[1]}/'

    def count(self, path: str) -> int:
        with self._lock:
            return self.hits[path]

    def __enter__(self) -> 'CardServer':
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
