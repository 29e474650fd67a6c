"""A hostile HTTP proxy on 127.0.0.1: whatever it is asked for, it answers one fixed JSON body, and counts the asks.

What a proxy on the way could do to a key fetch made over plain http: answer with keys of its own choosing.
"""

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class FakeProxy:
    def __init__(self, body: dict) -> None:
        self.body = json.dumps(body).encode()
        self.requests: list[str] = []  # the request targets it was sent, in order
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
                proxy.requests.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "public, max-age=300")
                self.send_header("Content-Length", str(len(proxy.body)))
                self.end_headers()
                self.wfile.write(proxy.body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@contextmanager
def fake_proxy(body: dict) -> Iterator[FakeProxy]:
    """A FakeProxy serving in a thread; shut down and closed on leaving."""
    proxy = FakeProxy(body)
    thread = threading.Thread(target=proxy.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.server.shutdown()
        proxy.server.server_close()
        thread.join(10)
