"""deploy/nginx.conf in front of python -m lesson_code serve (issue 16, findings 4 and 5): slow clients are nginx's
to bear and to close, the login limits count each client behind it, and --forwarded-allow-ips decides whose
X-Forwarded-For the service believes."""

import http.server
import json
import re
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from forge import ALICE

from tests.utils.nginx import running_nginx
from tests.utils.postgres import skip_or_fail
from tests.utils.uvicorn_process import (
    REPO_ROOT,
    child_environment,
    free_port,
    stop,
    wait_until_answering,
)

PAIR_FAILURES = 3  # LOGIN_FAILURES_PER_ACCOUNT_AND_CLIENT for these tests: 3/hour, not 20
SLOW_CLIENTS = 1030  # the review: 1,030 half-sent logins, under a 1,024 open-file limit
SERVICE_OPEN_FILES = 1024  # the service's RLIMIT_NOFILE: without nginx, 1,030 slow clients make a login time out
HEADER_TIMEOUT = 10  # deploy/nginx.conf's client_header_timeout
TRICKLE_SECONDS = 2  # a slow client sends one more header line this often
MARGIN = 5  # seconds past HEADER_TIMEOUT within which nginx must have closed every slow client
PER_ADDRESS = 100  # deploy/nginx.conf's limit_conn per_address
BODY_CAP = 8 * 1024  # deploy/nginx.conf's client_max_body_size
REQUEST_START = (
    b"POST /token HTTP/1.1\r\n"
    b"Host: 127.0.0.1\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\n"
    b"Content-Length: 35\r\n"
)  # never the blank line that ends the headers
ALICE_LOGIN = {"username": "alice", "password": "wonderland"}
WRONG_PASSWORD = {"username": "alice", "password": "not-wonderland"}
INCORRECT = {"detail": "Incorrect username or password"}
TOKEN_FIELDS = {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
ACCESS_LOG_LINE = re.compile(r'^(\S+) - \S+ \[[^]]+\] "([^"]*)" (\d{3}) ')
HOUR = 3600


@contextmanager
def serving(folder: Path, *options: str, open_files: int | None = None) -> Iterator[str]:
    """python -m lesson_code serve (one worker) on a free port of 127.0.0.1 with options, SQLite in folder and
    PAIR_FAILURES failures allowed per (username, client) pair; its base URL once it answers. open_files: its
    RLIMIT_NOFILE. Its output, uvicorn's access log included, goes to folder/service.out. Stopped afterwards."""
    port = free_port()
    env = child_environment(
        DATABASE_URL=f"sqlite:///{folder}/lesson.db",
        HASHING_LOCK_DIR=str(folder / "hashing"),
        LOGIN_FAILURES_PER_ACCOUNT_AND_CLIENT=f"{PAIR_FAILURES}/hour",
    )
    command = [sys.executable, "-m", "lesson_code", "serve", "--host", "127.0.0.1", "--port", str(port), *options]
    with open(folder / "service.out", "wb") as output:
        process = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        if open_files is not None:
            resource.prlimit(process.pid, resource.RLIMIT_NOFILE, (open_files, open_files))
        wait_until_answering(f"{base_url}/openapi.json", process, lambda: service_output(folder))
        yield base_url
    finally:
        stop(process)


def service_output(folder: Path) -> str:
    return (folder / "service.out").read_text(errors="replace")


def port_of(base_url: str) -> int:
    return urlsplit(base_url).port


def client_from(source: str, base_url: str) -> httpx.Client:
    """An HTTP client whose connections leave from the loopback address source (127.0.0.0/8 is all loopback)."""
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=base_url, transport=transport, timeout=5, trust_env=False)


def bearer(login: httpx.Response) -> dict[str, str]:
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def assert_logged_in_as_alice(client: httpx.Client, login: httpx.Response) -> None:
    assert login.status_code == 200, login.text
    assert set(login.json()) == TOKEN_FIELDS
    me = client.get("/users/me", headers=bearer(login))
    assert (me.status_code, me.json()) == (200, ALICE)


def assert_throttled(response: httpx.Response) -> None:
    """429 for too many failed logins, waiting most of the hour out (the failures were just now)."""
    wait = response.headers.get("retry-after", "")
    assert response.status_code == 429, response.text
    assert response.json() == {"detail": f"Too many failed logins: try again in {wait} seconds"}
    assert HOUR - 60 < int(wait) <= HOUR


def statuses(responses: list[httpx.Response]) -> list[tuple[int, dict]]:
    return [(response.status_code, response.json()) for response in responses]


def requests_logged(access_log: Path) -> Counter:
    """(request line, status) -> how many, from nginx's access log; its start-up check (GET /openapi.json) left out."""
    counted = Counter()
    for line in access_log.read_text().splitlines():
        match = ACCESS_LOG_LINE.match(line)
        assert match, line
        if match[2] != "GET /openapi.json HTTP/1.1":
            counted[match[2], int(match[3])] += 1
    return counted


@pytest.fixture
def open_files_for_slow_clients():
    """This process's RLIMIT_NOFILE soft limit raised, if need be, to hold SLOW_CLIENTS sockets and more; restored."""
    needed = SLOW_CLIENTS + 512
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft, hard = before
    if soft == resource.RLIM_INFINITY or soft >= needed:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))  # allowed to root alone
        except (ValueError, OSError):
            skip_or_fail(f"the open-file limit is {hard} (ulimit -Hn): {SLOW_CLIENTS} slow clients need {needed}")
    else:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


class SlowClients:
    """Connections that each sent the start of a POST /token (request line and headers, not the blank line ending
    them), and one more header line on each trickle(): the slow-client attack. Each one's end is recorded as
    (seconds after it connected, 'reset' / 'closed' / what it was answered)."""

    def __init__(self, port: int, count: int) -> None:
        self.selector = selectors.DefaultSelector()  # epoll on Linux: select() cannot watch over 1,024 sockets
        self.opened: dict[socket.socket, float] = {}
        self.ended: dict[socket.socket, tuple[float, str]] = {}
        self.lines = 0
        try:
            for _ in range(count):
                before = time.monotonic()  # before connecting: nginx's timer cannot start earlier
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                self.opened[sock] = before
                sock.sendall(REQUEST_START)
                sock.setblocking(False)
                self.selector.register(sock, selectors.EVENT_READ)
        except BaseException:
            self.close()
            raise

    @property
    def still_open(self) -> list[socket.socket]:
        return [sock for sock in self.opened if sock not in self.ended]

    def _end(self, sock: socket.socket, how: str) -> None:
        self.ended[sock] = (time.monotonic() - self.opened[sock], how)
        self.selector.unregister(sock)

    def trickle(self) -> None:
        self.lines += 1
        line = f"X-Slow-{self.lines}: {self.lines}\r\n".encode()
        for sock in self.still_open:
            try:
                sent = sock.send(line)  # a few bytes: the send buffer always takes them whole
            except ConnectionResetError:
                self._end(sock, "reset")
            except BrokenPipeError:
                self._end(sock, "closed")
            else:
                assert sent == len(line)

    def wait(self, seconds: float) -> None:
        """Up to seconds (0: just look), recording the connections that nginx ends meanwhile."""
        deadline = time.monotonic() + seconds
        while self.still_open:
            for key, _ in self.selector.select(max(0, deadline - time.monotonic())):
                try:
                    data = key.fileobj.recv(4096)
                except ConnectionResetError:
                    self._end(key.fileobj, "reset")
                else:
                    self._end(key.fileobj, f"answered {data[:60]!r}" if data else "closed")
            if time.monotonic() >= deadline:
                return

    def close(self) -> None:
        for sock in self.opened:
            sock.close()
        self.selector.close()


@contextmanager
def slow_clients(port: int, count: int) -> Iterator[SlowClients]:
    clients = SlowClients(port, count)
    try:
        yield clients
    finally:
        clients.close()


def test_nginx_bears_1030_slow_clients_for_the_service_and_closes_them_after_client_header_timeout(
    tmp_path, open_files_for_slow_clients
):
    with (
        serving(tmp_path, open_files=SERVICE_OPEN_FILES) as service_url,
        running_nginx(port_of(service_url)) as nginx,
        slow_clients(nginx.port, SLOW_CLIENTS) as slow,
    ):
        first_opened = min(slow.opened.values())
        slow.trickle()
        slow.wait(TRICKLE_SECONDS)
        slow.trickle()

        with httpx.Client(base_url=nginx.base_url, timeout=5, trust_env=False) as client:
            assert_logged_in_as_alice(client, client.post("/token", data=ALICE_LOGIN))
        slow.wait(0)
        assert slow.ended == {}, "nginx ended slow clients before client_header_timeout"
        assert time.monotonic() - first_opened < HEADER_TIMEOUT - 1, "the login did not happen while all were open"

        deadline = max(slow.opened.values()) + HEADER_TIMEOUT + MARGIN
        while slow.still_open and time.monotonic() < deadline:
            slow.wait(min(TRICKLE_SECONDS, deadline - time.monotonic()))
            slow.trickle()  # still trickling: a new header line does not buy more time

        assert len(slow.ended) == SLOW_CLIENTS, f"{len(slow.still_open)} slow clients still open"
        # reset_timedout_connection on: nginx resets them, without a word (the 408 is for its access log).
        assert Counter(how for _, how in slow.ended.values()) == {"reset": SLOW_CLIENTS}
        lasted = sorted(seconds for seconds, _ in slow.ended.values())
        assert HEADER_TIMEOUT - 0.1 <= lasted[0] and lasted[-1] < HEADER_TIMEOUT + MARGIN, (lasted[0], lasted[-1])
        assert requests_logged(nginx.access_log) == {
            ("POST /token HTTP/1.1", 408): SLOW_CLIENTS,
            ("POST /token HTTP/1.1", 200): 1,
            ("GET /users/me HTTP/1.1", 200): 1,
        }

    # uvicorn never saw the slow requests: one login reached it, alice's.
    logins_seen = [line for line in service_output(tmp_path).splitlines() if '"POST /token HTTP/1.1"' in line]
    assert [line.split(" - ", 1)[1] for line in logins_seen] == ['"POST /token HTTP/1.1" 200 OK'], logins_seen


def test_through_nginx_the_login_limits_count_each_client_not_the_proxy(tmp_path):
    with (
        serving(tmp_path, "--forwarded-allow-ips", "127.0.0.1") as service_url,
        running_nginx(port_of(service_url)) as nginx,
        client_from("127.0.0.2", nginx.base_url) as attacker,
        client_from("127.0.0.3", nginx.base_url) as alice,
    ):
        # The attacker names alice's address too: nginx replaces the header with the address it sees.
        forged = {"X-Forwarded-For": "127.0.0.3"}
        failures = [attacker.post("/token", data=WRONG_PASSWORD, headers=forged) for _ in range(PAIR_FAILURES)]
        assert statuses(failures) == [(401, INCORRECT)] * PAIR_FAILURES
        assert_throttled(attacker.post("/token", data=WRONG_PASSWORD, headers=forged))
        assert_throttled(attacker.post("/token", data=ALICE_LOGIN))  # the right password too, from there

        assert_logged_in_as_alice(alice, alice.post("/token", data=ALICE_LOGIN))


def test_serve_believes_x_forwarded_for_from_the_addresses_of_forwarded_allow_ips_alone(tmp_path):
    with (
        serving(tmp_path, "--forwarded-allow-ips", "127.0.0.9") as service_url,
        client_from("127.0.0.9", service_url) as proxy,
        client_from("127.0.0.1", service_url) as untrusted,
    ):
        for_attacker, for_alice = {"X-Forwarded-For": "198.51.100.7"}, {"X-Forwarded-For": "203.0.113.5"}
        failures = [proxy.post("/token", data=WRONG_PASSWORD, headers=for_attacker) for _ in range(PAIR_FAILURES)]
        assert statuses(failures) == [(401, INCORRECT)] * PAIR_FAILURES
        assert_throttled(proxy.post("/token", data=WRONG_PASSWORD, headers=for_attacker))
        assert_logged_in_as_alice(proxy, proxy.post("/token", data=ALICE_LOGIN, headers=for_alice))

        # 127.0.0.1 is not trusted now: whatever address it names, its failures are 127.0.0.1's own. Naming the
        # throttled 198.51.100.7 gets it a 401, not a 429; naming alice's 203.0.113.5, it is throttled after its
        # third failure in all (not its second naming her), and alice, behind the proxy, still logs in.
        first = untrusted.post("/token", data=WRONG_PASSWORD, headers=for_attacker)
        more = [untrusted.post("/token", data=WRONG_PASSWORD, headers=for_alice) for _ in range(PAIR_FAILURES - 1)]
        assert statuses([first, *more]) == [(401, INCORRECT)] * PAIR_FAILURES
        assert_throttled(untrusted.post("/token", data=WRONG_PASSWORD, headers=for_alice))
        assert_logged_in_as_alice(proxy, proxy.post("/token", data=ALICE_LOGIN, headers=for_alice))


class RecordingUpstream:
    """A plain HTTP server on 127.0.0.1, in threads, standing in for the service: it answers 200 {} to anything,
    and records each request it was sent. A request for /hold is answered once release() is called."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str, object, bytes]] = []  # method, path, version, headers, body
        self.holding = 0
        self.released = threading.Event()
        self.lock = threading.Lock()
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as nginx's upstream keepalive expects

            def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
                self.answer()

            def do_POST(self) -> None:  # noqa: N802
                self.answer()

            def answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with upstream.lock:
                    upstream.requests.append((self.command, self.path, self.request_version, self.headers, body))
                if self.path == "/hold":
                    with upstream.lock:
                        upstream.holding += 1
                    upstream.released.wait(30)
                payload = json.dumps({}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 256  # nginx may open a hundred connections at once
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    def seen(self, path: str) -> list[tuple[str, str, str, object, bytes]]:
        with self.lock:
            return [request for request in self.requests if request[1] == path]

    def release(self) -> None:
        self.released.set()


@contextmanager
def recording_upstream() -> Iterator[RecordingUpstream]:
    upstream = RecordingUpstream()
    thread = threading.Thread(target=upstream.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield upstream
    finally:
        upstream.release()
        upstream.server.shutdown()
        upstream.server.server_close()
        thread.join(10)


@pytest.fixture
def nginx_before_upstream() -> Iterator[tuple[RecordingUpstream, str]]:
    """A RecordingUpstream with nginx (deploy/nginx.conf) in front of it: both, and nginx's base URL."""
    with recording_upstream() as upstream, running_nginx(upstream.port, ready_path="/ready") as nginx:
        yield upstream, nginx.base_url


def test_nginx_replaces_the_forwarding_headers_a_client_sends(nginx_before_upstream):
    upstream, base_url = nginx_before_upstream
    forged = [("X-Forwarded-For", "203.0.113.99"), ("X-Forwarded-For", "127.0.0.3"), ("X-Forwarded-Proto", "https")]
    with client_from("127.0.0.2", base_url) as client:
        response = client.get("/users/me", headers=forged)
    assert (response.status_code, response.json(), response.headers["server"]) == (200, {}, "nginx")
    [(_, _, version, headers, _)] = upstream.seen("/users/me")
    assert version == "HTTP/1.1"
    assert headers.get_all("X-Forwarded-For") == ["127.0.0.2"]
    assert headers.get_all("X-Forwarded-Proto") == ["http"]
    assert headers.get_all("Host") == ["127.0.0.1"]
    assert headers.get_all("Connection") is None  # kept alive to the upstream


def test_nginx_reads_the_whole_body_first_and_refuses_one_over_8k(nginx_before_upstream):
    upstream, base_url = nginx_before_upstream

    def chunked(size: int) -> Iterator[bytes]:
        yield from (b"x" * min(1000, size - start) for start in range(0, size, 1000))

    with client_from("127.0.0.2", base_url) as client:
        at_cap = client.post("/token", content=b"x" * BODY_CAP)
        over = client.post("/token", content=b"x" * (BODY_CAP + 1))
        streamed = client.post("/token", content=chunked(BODY_CAP))
        streamed_over = client.post("/token", content=chunked(BODY_CAP + 1))
    assert [at_cap.status_code, over.status_code, streamed.status_code, streamed_over.status_code] == [200, 413] * 2
    assert "<title>413 Request Entity Too Large</title>" in over.text and "<center>nginx</center>" in over.text
    # Only the two bodies under the cap reached the upstream, the chunked one whole and with its length: nginx read
    # it all before passing it on.
    passed_on = [
        (len(body), headers["Content-Length"], headers["Transfer-Encoding"])
        for *_, headers, body in upstream.seen("/token")
    ]
    assert passed_on == [(BODY_CAP, str(BODY_CAP), None)] * 2


def test_nginx_holds_at_most_100_requests_at_once_from_one_address(nginx_before_upstream):
    upstream, base_url = nginx_before_upstream
    held: list[socket.socket] = []

    def hold() -> None:
        sock = socket.create_connection(("127.0.0.1", port_of(base_url)), timeout=5, source_address=("127.0.0.4", 0))
        held.append(sock)
        sock.sendall(b"GET /hold HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")

    def wait_until_upstream_holds(count: int) -> None:
        deadline = time.monotonic() + 10
        while upstream.holding < count:
            assert time.monotonic() < deadline, f"the upstream holds {upstream.holding} requests, not {count}"
            time.sleep(0.02)

    try:
        for _ in range(PER_ADDRESS - 1):
            hold()
        wait_until_upstream_holds(PER_ADDRESS - 1)
        with client_from("127.0.0.4", base_url) as same_address, client_from("127.0.0.5", base_url) as another:
            assert same_address.get("/ready").status_code == 200  # the 100th at once
            hold()
            wait_until_upstream_holds(PER_ADDRESS)
            refused = same_address.get("/ready")
            assert refused.status_code == 429 and "<title>429 Too Many Requests</title>" in refused.text
            assert another.get("/ready").status_code == 200
        upstream.release()
        for sock in held:
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        for sock in held:
            sock.close()
