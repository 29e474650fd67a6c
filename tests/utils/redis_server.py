"""A throwaway Redis server for tests: Debian's redis-server on 127.0.0.1 and a free port, nothing saved to disk.

It can be stopped and started again on the same port, to test the login limits' storage going down and coming back.
It is spoken to over a raw socket (RESP), so the tests need no Redis client of their own.
"""

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils.postgres import skip_or_fail
from tests.utils.uvicorn_process import free_port

HOW_TO_INSTALL = "apt-get install redis-server (Debian's package)"
START_TIMEOUT = 20
STOP_TIMEOUT = 20


class RedisReplyError(Exception):
    """Redis answered a command with an error (-ERR ...)."""


def _encode(*args: str) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _read_reply(reader):
    """One RESP2 reply from a binary file-like reader: str, int, None, or a list of those."""
    line = reader.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError(f"Redis closed the connection mid-reply: {line!r}")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisReplyError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        length = int(rest)
        if length < 0:
            return None
        data = reader.read(length + 2)
        return data[:-2].decode()
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [_read_reply(reader) for _ in range(count)]
    raise ConnectionError(f"not a RESP reply: {line!r}")


class RedisServer:
    """redis-server in a temporary folder: url for LOGIN_LIMITS_STORAGE_URL, command() to talk to it, stop(), start()."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.folder = Path(tempfile.mkdtemp(prefix="lesson-redis-"))
        self.log_file = self.folder / "redis.log"
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.paused = False

    @property
    def url(self) -> str:
        """The server as the limits library names it, for LOGIN_LIMITS_STORAGE_URL."""
        return f"async+redis://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self, *args: str, db: int = 0, timeout: float = 5):
        """Send one command (PING, FLUSHALL, KEYS LIMITS:*...) to database db and return its reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall((_encode("SELECT", str(db)) if db else b"") + _encode(*args))
            with sock.makefile("rb") as reader:
                if db:
                    _read_reply(reader)
                return _read_reply(reader)

    def flush(self) -> None:
        """Delete every key of every database: each test starts from an empty Redis."""
        assert self.command("FLUSHALL") == "OK"

    def keys(self, pattern: str = "*", db: int = 0) -> list[str]:
        """The keys of database db matching pattern, sorted."""
        return sorted(self.command("KEYS", pattern, db=db))

    def _log(self) -> str:
        return self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""

    def start(self) -> None:
        """Start redis-server on self.port (the same one after a stop) and wait until it answers PING."""
        assert not self.running, "redis-server is already running"
        command = [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--protected-mode", "yes",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.folder),
            "--logfile", str(self.log_file),
            "--daemonize", "no",
            "--databases", "16",
        ]  # fmt: skip
        self.process = subprocess.Popen(command, cwd=self.folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                stderr = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                self.process = None
                raise RuntimeError(f"redis-server exited at start-up: {stderr}{self._log()}")
            try:
                if self.command("PING", timeout=1) == "PONG":
                    return
            except (OSError, RedisReplyError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING within {START_TIMEOUT} s: {self._log()}")
            time.sleep(0.05)

    def pause(self) -> None:
        """Freeze redis-server (SIGSTOP): the kernel still accepts connections on its port, nothing answers them, as
        with a server that hangs or a network that drops packets."""
        assert self.running and not self.paused
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """Let a paused redis-server run again (SIGCONT): it answers what waited."""
        if self.paused and self.process is not None:
            self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        """Stop redis-server (SIGTERM; nothing to save) and wait until it has exited: its port refuses connections."""
        if self.process is None:
            return
        self.resume()
        process, self.process = self.process, None
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
        if process.stderr:
            process.stderr.close()

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One throwaway redis-server for the whole test run (skips locally without it, fails in CI)."""
    binary = shutil.which("redis-server")
    if binary is None:
        skip_or_fail(f"Redis is not installed (redis-server not found): {HOW_TO_INSTALL}")
    server = RedisServer(binary)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        server.remove()


@pytest.fixture
def redis(redis_server: RedisServer) -> Iterator[RedisServer]:
    """The test Redis, running and empty at the start of the test (started again if an earlier test stopped it)."""
    if not redis_server.running:
        redis_server.start()
    redis_server.flush()
    yield redis_server
    redis_server.resume()  # a test paused or stopped it: the next one needs it
    if not redis_server.running:
        redis_server.start()
