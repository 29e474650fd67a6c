"""Run an ASGI app with uvicorn in a background thread, on a free port of 127.0.0.1, and stop it cleanly."""

import contextlib
import socket
import threading
import time

import uvicorn


@contextlib.contextmanager
def serve_in_background(app, timeout: float = 10.0):
    """Yield the server's base URL; on leaving the block, shut the server down and wait for its thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
