"""Debian's nginx, with deploy/nginx.conf as an operator would install it, in front of a server of the tests.

The helper copies the file into a temporary folder and rewrites only what a test must: the port nginx listens on,
the port of the upstream server, the pid file and the logs; it adds the temporary files' folders, which the file
leaves at Debian's defaults under /var/lib/nginx. Each rewrite looks for its whole line, and a line that is missing
or found twice stops the test with a message that names it: the tests run the operators' file, not a copy of it that
could drift. `nginx -t` checks the result before nginx starts. The workers run as the file's `user` (www-data) when
the tests run as root, as in production; the folder then belongs to that user, so that they can write their
temporary files in it (a response larger than the proxy buffers goes to one).
"""

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.utils.postgres import skip_or_fail
from tests.utils.uvicorn_process import REPO_ROOT, free_port, wait_until_answering

CONFIG = REPO_ROOT / "deploy" / "nginx.conf"
HOW_TO_INSTALL = "apt-get install nginx (Debian's package)"
WORKER_USER = "www-data"  # deploy/nginx.conf's `user` line, checked below
LISTEN = "listen 127.0.0.1:8080;"
UPSTREAM = "server 127.0.0.1:8000;"
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")  # every one nginx creates when it starts
START_TIMEOUT = 30
STOP_TIMEOUT = 10


def find_nginx() -> str | None:
    """The nginx program: on PATH, else Debian's /usr/sbin/nginx (not on a plain user's PATH)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")


def the_line(text: str, line: str) -> re.Pattern:
    """The pattern of the one line of text that reads `line` (indentation aside; a comment is not it)."""
    pattern = re.compile(rf"^([ \t]*){re.escape(line)}[ \t]*$", re.MULTILINE)
    found = len(pattern.findall(text))
    if found != 1:
        raise AssertionError(f"{CONFIG} should have the line {line!r} once, not {found} times (tests/utils/nginx.py)")
    return pattern


def replace_line(text: str, line: str, new_line: str) -> str:
    """text with its one line that reads `line` turned into new_line, indented the same."""
    return the_line(text, line).sub(lambda match: match[1] + new_line, text)


def config_for_test(text: str, folder: Path, port: int, upstream_port: int) -> str:
    """deploy/nginx.conf's text, listening on port, proxying to upstream_port, writing only into folder."""
    the_line(text, f"user {WORKER_USER};")  # kept: the folder is given to that user (running_nginx)
    for line, new_line in [
        (LISTEN, f"listen 127.0.0.1:{port};"),
        (UPSTREAM, f"server 127.0.0.1:{upstream_port};"),
        ("pid /run/nginx.pid;", f"pid {folder}/nginx.pid;"),
        ("error_log /var/log/nginx/error.log;", f"error_log {folder}/error.log;"),
        ("access_log /var/log/nginx/access.log;", f"access_log {folder}/access.log;"),
    ]:
        text = replace_line(text, line, new_line)
    temp_paths = "".join(f"    {name}_temp_path {folder}/{name};\n" for name in TEMP_PATHS)
    return replace_line(text, "http {", "http {\n" + temp_paths.rstrip("\n"))


@dataclass
class Nginx:
    base_url: str
    port: int
    folder: Path

    @property
    def access_log(self) -> Path:
        """nginx's access log (the combined format): a line per request, written when it ends."""
        return self.folder / "access.log"

    def output(self) -> str:
        """What nginx printed, then the end of its error log: for the messages of failures."""
        printed = (self.folder / "nginx.out").read_text(errors="replace")
        error_log = self.folder / "error.log"
        logged = error_log.read_text(errors="replace") if error_log.exists() else ""
        return f"{printed[-2000:]}\nerror.log: {logged[-3000:]}"


@contextmanager
def running_nginx(upstream_port: int, ready_path: str = "/openapi.json") -> Iterator[Nginx]:
    """nginx with deploy/nginx.conf on a free port of 127.0.0.1, proxying to 127.0.0.1:upstream_port; yielded once
    GET ready_path answers 200 through it, stopped afterwards (SIGQUIT, then SIGTERM, then SIGKILL) and its folder
    deleted. Skips locally without nginx, fails under CI."""
    program = find_nginx()
    if program is None:
        skip_or_fail(f"nginx is not installed (no nginx on PATH nor in /usr/sbin): {HOW_TO_INSTALL}")
    as_root = os.geteuid() == 0
    if as_root:
        try:
            pwd.getpwnam(WORKER_USER)
        except KeyError:
            skip_or_fail(f"no user {WORKER_USER} for nginx's workers (deploy/nginx.conf's `user`): {HOW_TO_INSTALL}")
    folder = Path(tempfile.mkdtemp(prefix="lesson-nginx-"))
    try:
        if as_root:  # the master (root) writes the pid and logs; the workers (www-data) their temporary files
            shutil.chown(folder, WORKER_USER)
        port = free_port()
        config = folder / "nginx.conf"
        config.write_text(config_for_test(CONFIG.read_text(), folder, port, upstream_port))
        command = [program, "-p", f"{folder}/", "-c", str(config), "-g", "daemon off;"]
        check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30, check=False)
        if check.returncode != 0:
            raise AssertionError(f"nginx -t refuses {CONFIG} as the tests rewrite it:\n{check.stderr}")
        server = Nginx(f"http://127.0.0.1:{port}", port, folder)
        with open(folder / "nginx.out", "wb") as printed:
            # A session of its own: should the master have to be killed, its workers go with it (killpg below).
            process = subprocess.Popen(command, stdout=printed, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until_answering(f"{server.base_url}{ready_path}", process, server.output, timeout=START_TIMEOUT)
            yield server
        finally:
            stop(process)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def stop(process: subprocess.Popen) -> None:
    """Graceful shutdown (SIGQUIT), then fast (SIGTERM), then SIGKILL for the master and its workers."""
    for sig in (signal.SIGQUIT, signal.SIGTERM):
        if process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(STOP_TIMEOUT)
            return
        except subprocess.TimeoutExpired:
            pass
    os.killpg(process.pid, signal.SIGKILL)  # the group nginx's session started: the master and its workers
    process.wait(STOP_TIMEOUT)
