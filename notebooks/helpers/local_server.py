"""Run an ASGI app with uvicorn in a background thread, on a free port of 127.0.0.1, and stop it cleanly."""

import contextlib
import socket
import threading
import time

import uvicorn


def free_socket() -> socket.socket:
    """A socket bound to a free port of 127.0.0.1: its address (url_of) is known before a server starts on it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def url_of(sock: socket.socket) -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextlib.contextmanager
def serve_on(app, sock: socket.socket, timeout: float = 10.0):
    """Serve app on sock (from free_socket); yield its base URL; on leaving, shut it down and close sock."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


@contextlib.contextmanager
def serve_in_background(app, timeout: float = 10.0):
    """Yield the server's base URL; on leaving the block, shut the server down and wait for its thread."""
    with serve_on(app, free_socket(), timeout) as url:
        yield url
