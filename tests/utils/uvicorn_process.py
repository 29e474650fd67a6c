"""uvicorn in a child process on 127.0.0.1 (workers, restarts), with an access log naming the pid that answered."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
START_TIMEOUT = 60
STOP_TIMEOUT = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_answering(url: str, process: subprocess.Popen, output=lambda: "", timeout: float = START_TIMEOUT):
    """Poll url until it answers 200; raise, with what the process printed, if it exits or times out first."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}: {output()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not answer within {timeout} s: {output()}")
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.1)


def log_config(access_log: Path) -> dict:
    """uvicorn's access log as 'pid method path status' lines in access_log; its other messages on stderr."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "access": {"()": "uvicorn.logging.AccessFormatter", "fmt": "%(process)d %(request_line)s %(status_code)s"}
        },
        "handlers": {"access": {"class": "logging.FileHandler", "filename": str(access_log), "formatter": "access"}},
        "loggers": {"uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False}},
    }


def served_by(access_log: Path) -> list[tuple[int, str]]:
    """(pid, 'METHOD /path') for each request in the access log, in order."""
    entries = []
    for line in access_log.read_text().splitlines():
        pid, method, path, *_ = line.split()
        entries.append((int(pid), f"{method} {path}"))
    return entries


@contextmanager
def uvicorn_process(app: str, env: dict[str, str], folder: Path, workers: int = 1) -> Iterator[str]:
    """Start `uvicorn app` on a free port of 127.0.0.1; yield its base URL once it answers; stop it afterwards."""
    port = free_port()
    config = folder / "log-config.json"
    config.write_text(json.dumps(log_config(folder / "access.log")))
    output = open(folder / "uvicorn.out", "ab")  # noqa: SIM115  (closed below, after the process)
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers), "--log-config", str(config)]
    process = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{base_url}/openapi.json", process, lambda: _output(folder))
        yield base_url
    finally:
        stop(process)
        output.close()


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, as Ctrl-C in a terminal: uvicorn shuts down cleanly; killed if it has not within STOP_TIMEOUT."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)


def _output(folder: Path) -> str:
    return (folder / "uvicorn.out").read_text(errors="replace")[-3000:]


def child_environment(**values: str) -> dict[str, str]:
    """This process's environment (the test secret included) with values added."""
    return {**os.environ, **values}
