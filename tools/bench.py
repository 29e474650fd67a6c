"""make bench: how the lesson's API and the finished service hold up, measured with wrk against uvicorn on 127.0.0.1.

    python tools/bench.py [--seconds N] [--repeat N] [--compare] [--only SECTION,...]

Sections (--only picks some of them; the default is all):
  guessing   400 connections guess alice's password while she logs in from another address (app.py): the share of
             guesses answered 401, 429 (limits) and 503 (hashing queue full), her share of 200 and her login latency;
             once with the default limits, once with the limits lifted (as from more addresses than they can tell
             apart). It runs three times as long as the others: the limits stop a guesser once its failures are hashed.
  storm      Login storm: /users/me throughput while four clients log in non-stop, as a share of its idle throughput,
             for app.py (and, with --compare, the variants of tools/bench_app.py) and for service.py.
  protection /users/me (token checked; in service.py its session and user too, in SQL, on every request) against the
             same handler without protection, in the same server.
  refresh    service.py: refresh throughput (grant_type=refresh_token; every request spends a refresh token that was
             never used and brings back the next one) against login throughput (password grant).
  resource   resource_server.py: /profile (an ES256 token checked with the issuer's public key, fetched once from
             its JWKS) against the same handler without protection. The issuer is service.py with JWT_ALGORITHM=ES256
             on a fresh key directory; alice logs in there once, and the resource server is pointed at it.
  tokens     Create and decode time per token: HS256 (lesson_code against bare python-jose and a standard-library
             HMAC floor), then ES256 and RS256 (keys.SignedAccessTokens on a fresh key directory against bare
             python-jose with the same key, constructed once).
The service runs on a fresh SQLite database and key directory in a temporary folder (DATABASE_URL, JWT_KEY_DIR).
The two sides of a ratio take turns, A B A B, each run --seconds long; every ratio is measured --repeat times, interleaved,
and the table gives the best and the spread, with the load average and the cores other processes kept busy (on a
shared machine, measure when they are few). Ctrl-C (or kill) stops every server and wrk the bench started.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections import Counter, defaultdict
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("guessing", "storm", "protection", "refresh", "resource", "tokens")
LOGIN_SCRIPT = """
wrk.method = "POST"
wrk.body = "username=alice&password=wonderland"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
"""
GUESS_SCRIPT = LOGIN_SCRIPT.replace("password=wonderland", "password=guess")
# Appended to a wrk script: count the answers by status, and print the counts when done.
STATUS_SCRIPT = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do io.write(string.format("status %d: %d\\n", status, count)) end
  end
end
"""
# Refresh tokens are spent once: each request takes one never used from a queue (read from the file named after --)
# and each 200 puts the refresh token it brings back at the end of the queue. The queue starts with more tokens than
# there are connections, so a lost answer cannot leave a connection without one; if the queue ever runs dry the
# request goes out with a token that cannot work, and is counted as failed ("none left").
REFRESH_SCRIPT = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  queue, first, last, statuses, dry = {}, 1, 0, {}, 0
  for line in io.lines(args[1]) do last = last + 1; queue[last] = line end
end
function request()
  local token = "none-left"
  if queue and first <= last then
    token, queue[first], first = queue[first], nil, first + 1
  elseif queue then
    dry = dry + 1
  end
  local headers = {["Content-Type"] = "application/x-www-form-urlencoded"}
  return wrk.format("POST", nil, headers, "grant_type=refresh_token&refresh_token=" .. token)
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  local token = status == 200 and body:match('"refresh_token"%s*:%s*"([^"]+)"')
  if token then last = last + 1; queue[last] = token end
end
function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do io.write(string.format("status %d: %d\\n", status, count)) end
    io.write(string.format("none left: %d\\n", thread:get("dry")))
  end
end
"""
STORM_CONNECTIONS = 400
READERS = 16  # connections reading /users/me
LOGIN_CLIENTS = 4
REFRESH_CONNECTIONS = 16
REFRESH_TOKENS_PER_CONNECTION = 2
# The service keeps at most 20 live sessions a user (a login beyond ends the oldest): the readers of the login storm
# sign in as carol while alice logs in, and the refresh tokens are minted for both, after the logins are measured.
DEMO_PASSWORDS = {"alice": "wonderland", "carol": "tea-party"}
WARM_UP_SECONDS = 2
# The two sides of a ratio take turns, A B A B, each slice --seconds long (5 by default): a slice must be long enough
# to measure what a steady run does (1-second slices saw well under half the throughput of 4-second runs, and
# pulled every ratio towards 1).
ROUNDS = 2
# As if the guesses came from more addresses than the limits can tell apart: only the hashing queue stands.
LIMITS_LIFTED = {
    "LOGIN_FAILURES_PER_ACCOUNT": "1000000/hour",
    "LOGIN_FAILURES_PER_CLIENT": "1000000/hour",
    "LOGIN_FAILURES_PER_ACCOUNT_AND_CLIENT": "1000000/hour",
}
# The service's login storm and login throughput measure the hashing capacity: its LOGIN_CLIENTS clients log in from
# 127.0.0.1 as alice, as if from as many addresses and accounts, so the attempt limits and an address's share of the
# hashing queue (tested in tests/test_login_floods.py) do not stop them first.
LOGINS_FROM_MANY = {
    "LOGIN_ATTEMPTS_PER_CLIENT": "1000000/minute",
    "LOGIN_ATTEMPTS_PER_ACCOUNT": "1000000/minute",
    "MAX_LOGINS_HASHING_PER_CLIENT": str(LOGIN_CLIENTS),
}
APP, SERVICE = "bench_app", "bench_service"  # the modules in tools/ that serve app.py and service.py
RESOURCE = "bench_resource"  # and resource_server.py
BARE = "bench_bare"  # a bare FastAPI app: the same answers, no middleware, no dependency, no database
BARE_PATHS = {SERVICE: "/bench/bare-me", RESOURCE: "/bench/bare-profile"}
UNPROTECTED = {APP: "/bench/unprotected-me", SERVICE: "/bench/unprotected-me", RESOURCE: "/bench/unprotected-profile"}
PROTECTED = {APP: "/users/me", SERVICE: "/users/me", RESOURCE: "/profile"}
AUDIENCE = "jwt-lesson-api"
SIGNED_ALGORITHMS = ("ES256", "RS256")
WRK_STARTED: list[subprocess.Popen] = []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def server(
    module: str,
    secret: str | None,
    variant: str = "lesson",
    settings: dict | None = None,
    code: Path = ROOT,
    port: int | None = None,
):
    """uvicorn, one worker, in its own process (service.py on a fresh SQLite file and key directory); stopped on
    leaving the block. secret None: no JWT_SECRET_KEY at all (the resource server holds none)."""
    port = port or free_port()
    with tempfile.TemporaryDirectory() as folder:
        env = {
            **{name: value for name, value in os.environ.items() if name != "JWT_SECRET_KEY"},
            **(settings or {}),
            "BENCH_VARIANT": variant,
            "DATABASE_URL": f"sqlite:///{Path(folder, 'bench.db')}",
            "JWT_KEY_DIR": str(Path(folder, "keys")),
            "JWT_SECRET_FILE": str(Path(folder, "jwt_secret")),
            "PYTHONPATH": f"{code}{os.pathsep}{ROOT / 'tools'}",
        }
        if secret is not None:
            env["JWT_SECRET_KEY"] = secret
        command = [sys.executable, "-m", "uvicorn", f"{module}:app", "--host", "127.0.0.1", "--port", str(port)]
        process = subprocess.Popen([*command, "--log-level", "warning", "--no-access-log"], env=env, cwd=folder)
        base_url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"{base_url}/openapi.json", timeout=1)
                    break
                except httpx.TransportError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"bench: the server ({module}) did not start") from None
                    time.sleep(0.1)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def start_wrk(url: str, seconds: int, connections: int, *extra: str, script_args: tuple = ()) -> subprocess.Popen:
    command = ["wrk", "--threads", "1", "--connections", str(connections), "--duration", f"{seconds}s", *extra, url]
    command += ["--", *script_args] if script_args else []
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    WRK_STARTED.append(process)
    return process


@contextmanager
def stopping_wrk():
    """On leaving the block (an error, Ctrl-C, kill), every wrk still running is stopped."""
    try:
        yield
    finally:
        for process in WRK_STARTED:
            if process.poll() is None:
                process.kill()
                process.wait()
        WRK_STARTED.clear()


def wrk_report(process: subprocess.Popen) -> dict:
    """The figures of wrk's printed report, and how many answers had each status when a script counted them."""
    output = process.communicate()[0]
    if process.returncode != 0 or "Requests/sec" not in output:
        raise SystemExit(f"bench: wrk failed:\n{output}")
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    dry = re.search(r"^none left: (\d+)$", output, re.M)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1]),
        "requests": int(re.search(r"(\d+) requests in", output)[1]),
        "failed": int(failed[1]) if failed else 0,
        "socket_errors": errors[1] if errors else "none",
        "max_latency": re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", output)[1],
        "statuses": {int(code): int(count) for code, count in re.findall(r"^status (\d+): (\d+)$", output, re.M)},
        "dry": int(dry[1]) if dry else 0,
    }


def seconds_of(latency: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", latency).groups()
    return float(number) * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60}[unit]


def combined(reports: list[dict]) -> dict:
    """One report for slices of equal length: mean throughput, summed counts, the longest latency."""
    statuses = Counter()
    for report in reports:
        statuses.update(report["statuses"])
    errors = sorted({report["socket_errors"] for report in reports} - {"none"})
    return {
        "rps": statistics.fmean(report["rps"] for report in reports),
        "requests": sum(report["requests"] for report in reports),
        "failed": sum(report["failed"] for report in reports),
        "socket_errors": "; ".join(errors) or "none",
        "max_latency": max((report["max_latency"] for report in reports), key=seconds_of),
        "statuses": dict(statuses),
        "dry": sum(report["dry"] for report in reports),
    }


def alternating(rounds: int, **measures) -> dict:
    """The measures taking turns (A B A B ...), rounds times: background load falls on all of them alike."""
    slices = {name: [] for name in measures}
    for _ in range(rounds):
        for name, measure in measures.items():
            slices[name].append(measure())
    return {name: combined(reports) for name, reports in slices.items()}


def log_in(base_url: str, user: str = "alice") -> dict:
    form = {"username": user, "password": DEMO_PASSWORDS[user]}
    response = httpx.post(f"{base_url}/token", data=form, timeout=30)
    response.raise_for_status()
    return response.json()


def users_me(base_url: str, token: str, seconds: int, path: str = "/users/me") -> subprocess.Popen:
    return start_wrk(f"{base_url}{path}", seconds, READERS, "--header", f"Authorization: Bearer {token}")


def warm_up(base_url: str, token: str, module: str = APP) -> None:
    for path in (PROTECTED[module], UNPROTECTED[module]):
        wrk_report(users_me(base_url, token, WARM_UP_SECONDS, path))


def login_storm(module: str, variant: str, secret: str, seconds: int, scripts: dict, code: Path) -> dict:
    with server(module, secret, variant, LOGINS_FROM_MANY if module == SERVICE else None, code=code) as base_url:
        token = log_in(base_url, "carol" if module == SERVICE else "alice")["access_token"]
        warm_up(base_url, token, module)
        # Not in turns: logins left in flight when a slice ends would still be hashing in the next idle slice.
        idle = wrk_report(users_me(base_url, token, seconds))
        readers = users_me(base_url, token, seconds)
        logins = start_wrk(
            f"{base_url}/token", seconds, LOGIN_CLIENTS, "--script", scripts["login"], "--timeout", "30s"
        )
        storm, login = wrk_report(readers), wrk_report(logins)
    return {"ratio": storm["rps"] / idle["rps"], "idle": idle, "storm": storm, "login": login}


def protected_against_unprotected(module: str, base_url: str, token: str, seconds: int, bare_url: str | None) -> dict:
    """The protected route against its unprotected copy in the same app, and (bare_url) against a bare FastAPI
    handler giving the same answer in a server of its own, all taking turns."""
    warm_up(base_url, token, module)
    measures = {
        "protected": lambda: wrk_report(users_me(base_url, token, seconds, PROTECTED[module])),
        "unprotected": lambda: wrk_report(users_me(base_url, token, seconds, UNPROTECTED[module])),
    }
    if bare_url is not None:
        wrk_report(users_me(bare_url, token, WARM_UP_SECONDS, BARE_PATHS[module]))
        measures["bare"] = lambda: wrk_report(users_me(bare_url, token, seconds, BARE_PATHS[module]))
    runs = alternating(ROUNDS, **measures)
    protected, unprotected = runs["protected"], runs["unprotected"]
    result = {"ratio": protected["rps"] / unprotected["rps"], "protected": protected, "unprotected": unprotected}
    if bare_url is not None:
        result["bare"], result["bare ratio"] = runs["bare"], protected["rps"] / runs["bare"]["rps"]
    return result


def protection_cost(module: str, secret: str, seconds: int, code: Path) -> dict:
    with server(module, secret, code=code) as base_url, bare_server(module, code) as bare_url:
        token = log_in(base_url)["access_token"]
        return protected_against_unprotected(module, base_url, token, seconds, bare_url)


@contextmanager
def bare_server(module: str, code: Path):
    """The bare FastAPI app, for the modules measured against it (service.py, resource_server.py); else nothing."""
    if module not in BARE_PATHS:
        yield None
        return
    with server(BARE, None, code=code) as bare_url:
        yield bare_url


def resource_server_cost(secret: str, seconds: int, code: Path) -> dict:
    """resource_server.py /profile against its unprotected copy, with a token alice got from a real ES256 issuer
    (service.py, still running meanwhile: the resource server fetches its key set once and keeps it)."""
    issuer_port = free_port()
    issuer = f"http://127.0.0.1:{issuer_port}"
    shared = {"JWT_ISSUER": issuer, "JWT_AUDIENCE": AUDIENCE}
    issuer_settings = {**shared, "JWT_ALGORITHM": "ES256"}
    with server(SERVICE, secret, settings=issuer_settings, code=code, port=issuer_port):
        token = log_in(issuer)["access_token"]
        resource_settings = {**shared, "JWKS_URL": f"{issuer}/.well-known/jwks.json"}
        with (
            server(RESOURCE, None, settings=resource_settings, code=code) as base_url,
            bare_server(RESOURCE, code) as bare,
        ):
            answer = httpx.get(f"{base_url}/profile", headers={"Authorization": f"Bearer {token}"}, timeout=10)
            if answer.status_code != 200:
                raise SystemExit(
                    f"bench: the resource server refused alice's token: {answer.status_code} {answer.text}"
                )
            return protected_against_unprotected(RESOURCE, base_url, token, seconds, bare)


def refresh_against_login(secret: str, seconds: int, scripts: dict, folder: str, code: Path) -> dict:
    """service.py: logins by LOGIN_CLIENTS clients, then refreshes on REFRESH_CONNECTIONS, each token spent once."""
    with server(SERVICE, secret, settings=LOGINS_FROM_MANY, code=code) as base_url:
        login = wrk_report(
            start_wrk(f"{base_url}/token", seconds, LOGIN_CLIENTS, "--script", scripts["login"], "--timeout", "30s")
        )
        users = list(DEMO_PASSWORDS) * REFRESH_CONNECTIONS * REFRESH_TOKENS_PER_CONNECTION
        tokens_file = Path(folder, "refresh_tokens.txt")
        count = REFRESH_CONNECTIONS * REFRESH_TOKENS_PER_CONNECTION
        tokens_file.write_text("".join(log_in(base_url, user)["refresh_token"] + "\n" for user in users[:count]))
        refresh_script = ("--script", scripts["refresh"])
        refresh = wrk_report(
            start_wrk(
                f"{base_url}/token", seconds, REFRESH_CONNECTIONS, *refresh_script, script_args=(str(tokens_file),)
            )
        )
    return {"ratio": refresh["statuses"].get(200, 0) / seconds / login["rps"], "refresh": refresh, "login": login}


def legitimate_logins(base_url: str, seconds: int) -> dict:
    """alice logs in from 127.0.0.2, one login every 50 ms, while the storm comes from 127.0.0.1."""
    statuses, latencies = Counter(), []
    deadline = time.monotonic() + seconds
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=base_url, transport=transport, timeout=30) as http:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = http.post("/token", data={"username": "alice", "password": "wonderland"})
            statuses[response.status_code] += 1
            if response.status_code == 200:
                latencies.append(time.perf_counter() - started)
            time.sleep(0.05)
    latencies.sort()
    return {"statuses": statuses, "latencies": latencies}


def guessing_storm(secret: str, seconds: int, guess_script: str, settings: dict | None) -> tuple[dict, dict]:
    """STORM_CONNECTIONS connections guess alice's password non-stop while she logs in from another address."""
    with server(APP, secret, settings=settings) as base_url:
        guesses = start_wrk(
            f"{base_url}/token", seconds, STORM_CONNECTIONS, "--script", guess_script, "--timeout", "30s"
        )
        alice = legitimate_logins(base_url, seconds)
        return wrk_report(guesses), alice


def share(statuses: dict, status: int) -> str:
    return f"{statuses.get(status, 0) / max(1, sum(statuses.values())):.0%}"


def guessing_rows(name: str, guesses: dict, alice: dict) -> list[tuple[str, str, str]]:
    latencies = alice["latencies"]
    figures = (
        f"p50 {statistics.median(latencies) * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms"
        if latencies
        else "none succeeded"
    )
    statuses = guesses["statuses"]
    return [
        (
            f"guessing storm, {name}: {STORM_CONNECTIONS} connections guess alice's password",
            f"{guesses['requests']} guesses ({guesses['rps']:.0f}/s): 401 {share(statuses, 401)},"
            f" 429 {share(statuses, 429)}, 503 {share(statuses, 503)}",
            "one run",
        ),
        (
            "  alice meanwhile, from another address",
            f"{sum(alice['statuses'].values())} logins, 200 {share(alice['statuses'], 200)},"
            f" 503 {share(alice['statuses'], 503)}; successful ones {figures}",
            "",
        ),
    ]


def best_and_spread(runs: list[dict]) -> tuple[dict, str]:
    """The run with the best ratio, and the ratios' range over the runs."""
    ratios = [run["ratio"] for run in runs]
    best = max(runs, key=lambda run: run["ratio"])
    if len(runs) == 1:
        return best, "one run"
    return best, f"{min(ratios):.2f}-{max(ratios):.2f} over {len(runs)}"


def storm_row(name: str, runs: list[dict], target: str) -> tuple[str, str, str]:
    best, spread = best_and_spread(runs)
    login, failed = best["login"], sum(run["storm"]["failed"] + run["idle"]["failed"] for run in runs)
    logins_failed = sum(run["login"]["failed"] for run in runs)
    return (
        f"login storm, {name}: /users/me while {LOGIN_CLIENTS} clients log in, share of idle ({target})",
        f"**{best['ratio']:.2f}** ({best['storm']['rps']:.0f} vs {best['idle']['rps']:.0f} req/s);"
        f" logins {login['rps']:.1f}/s, max {login['max_latency']}; failed: logins {logins_failed},"
        f" /users/me {failed}",
        spread,
    )


def protection_row(name: str, runs: list[dict], target: str) -> tuple[str, str, str]:
    best, spread = best_and_spread(runs)
    failed = sum(run["protected"]["failed"] + run["unprotected"]["failed"] for run in runs)
    return (
        f"protection cost, {name}: share of the same handler unprotected ({target})",
        f"**{best['ratio']:.2f}** ({best['protected']['rps']:.0f} vs {best['unprotected']['rps']:.0f} req/s);"
        f" failed {failed}",
        spread,
    )


def bare_row(name: str, runs: list[dict], target: str) -> tuple[str, str, str]:
    """The protected route as a share of a bare FastAPI handler giving the same answer, on the same server."""
    ratios = [run["bare ratio"] for run in runs]
    best = max(runs, key=lambda run: run["bare ratio"])
    failed = sum(run["bare"]["failed"] for run in runs)
    return (
        f"{name}: share of a bare FastAPI handler with the same answer (tools/bench_bare.py; {target})",
        f"**{best['bare ratio']:.2f}** ({best['protected']['rps']:.0f} vs {best['bare']['rps']:.0f} req/s);"
        f" failed {failed}",
        "one run" if len(runs) == 1 else f"{min(ratios):.2f}-{max(ratios):.2f} over {len(runs)}",
    )


def refresh_row(runs: list[dict], seconds: int) -> tuple[str, str, str]:
    best, spread = best_and_spread(runs)
    refresh, login = best["refresh"], best["login"]
    refused = sum(run["refresh"]["requests"] - run["refresh"]["statuses"].get(200, 0) for run in runs)
    dry = sum(run["refresh"]["dry"] for run in runs)
    logins_failed = sum(run["login"]["failed"] for run in runs)
    return (
        "refresh vs login, service.py: successful rotations per second / logins per second (target >= 10)",
        f"**{best['ratio']:.1f}x** ({refresh['statuses'].get(200, 0) / seconds:.0f} rotations/s on"
        f" {REFRESH_CONNECTIONS} connections vs {login['rps']:.1f} logins/s on {LOGIN_CLIENTS});"
        f" refreshes not 200: {refused} (queue dry: {dry}), logins failed: {logins_failed}",
        spread,
    )


def per_call(function, *args) -> float:
    runs, total = timeit.Timer(lambda: function(*args)).autorange()
    best = min(timeit.repeat(lambda: function(*args), number=runs, repeat=5))
    return best / runs * 1e6


def token_costs(secret: str) -> list[tuple[str, float, float]]:
    """HS256: lesson_code with the key object a service makes once (hmac_key), bare python-jose doing the same job
    (the same claims, iat and exp made from datetimes as create_access_token does) with the same key object, and
    with the secret as a string (as FastAPI's older tutorial passed it: python-jose then parses it on every call),
    and the standard library's HMAC as the floor."""
    os.environ["JWT_SECRET_KEY"] = secret
    sys.path.insert(0, str(ROOT))
    from jose import jwt

    from lesson_code import tokens

    claims = {"sub": "alice"}
    key_object = tokens.hmac_key(secret)
    token = tokens.create_access_token(claims, key=key_object)
    full = jwt.get_unverified_claims(token)
    key = secret.encode()

    def bare_create(signing_key) -> str:
        now = datetime.now(timezone.utc)
        return jwt.encode({**claims, "iat": now, "exp": now + timedelta(minutes=15)}, signing_key, "HS256")

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def hmac_encode() -> str:
        signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(full).encode())
        return signing_input + "." + b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())

    def hmac_decode(token: str) -> dict:
        signing_input, _, signature = token.rpartition(".")
        expected = b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, signature):
            raise ValueError("bad signature")
        payload = signing_input.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))

    return [
        (
            "HS256, lesson_code (create_access_token / decode_access_token, key=hmac_key(...))",
            per_call(tokens.create_access_token, claims, None, key_object),
            per_call(tokens.decode_access_token, token, key_object),
        ),
        (
            "HS256, bare python-jose, the same key object (jwt.encode / jwt.decode)",
            per_call(bare_create, key_object),
            per_call(jwt.decode, token, key_object, ["HS256"]),
        ),
        (
            "HS256, bare python-jose, the secret as a string",
            per_call(bare_create, secret),
            per_call(jwt.decode, token, secret, ["HS256"]),
        ),
        ("HS256, standard-library HMAC floor", per_call(hmac_encode), per_call(hmac_decode, token)),
    ]


def with_ratios(costs: list[tuple[str, float, float]]) -> list[tuple[str, str]]:
    """Each row's figures; a lesson_code row also as a multiple of the bare python-jose row right after it."""
    rows = []
    for index, (name, encode, decode) in enumerate(costs):
        figure = f"create {encode:.1f} us, decode {decode:.1f} us"
        if "lesson_code" in name and index + 1 < len(costs):
            _, bare_encode, bare_decode = costs[index + 1]
            figure += f" ({encode / bare_encode:.2f}x and {decode / bare_decode:.2f}x bare python-jose's)"
        rows.append((name, figure))
    return rows


def signed_token_costs(algorithm: str) -> list[tuple[str, float, float]]:
    """ES256 or RS256: keys.SignedAccessTokens on a fresh key directory (iss, aud and kid checked, the key picked by
    kid), and bare python-jose with the same key pair, constructed once, verifying iss and aud too."""
    sys.path.insert(0, str(ROOT))
    from jose import jwk, jwt

    from lesson_code import keys

    issuer = "http://127.0.0.1:8000"
    with tempfile.TemporaryDirectory() as folder:
        source = keys.KeySource(Path(folder, "keys"), algorithm)
        signed = keys.SignedAccessTokens(source, issuer, AUDIENCE, timedelta(minutes=15))
        claims = {"sub": "alice", "scope": "me"}
        token = signed.create(claims)
        signing = source.ring().signing
        private_key, public_key = jwk.construct(signing.jwk, algorithm), jwk.construct(signing.public_jwk(), algorithm)
        full, headers = jwt.get_unverified_claims(token), {"kid": signing.kid}

        def bare_decode() -> dict:
            return jwt.decode(token, public_key, algorithms=[algorithm], audience=AUDIENCE, issuer=issuer)

        return [
            (
                f"{algorithm}, lesson_code (SignedAccessTokens.create / .decode)",
                per_call(signed.create, claims),
                per_call(signed.decode, token),
            ),
            (
                f"{algorithm}, bare python-jose (jwt.encode / jwt.decode)",
                per_call(jwt.encode, full, private_key, algorithm, headers),
                per_call(bare_decode),
            ),
        ]


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        print("bench: installing wrk (Debian's package)", file=sys.stderr)
        try:
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL)
        except subprocess.CalledProcessError as error:
            raise SystemExit(f"bench: could not install wrk ({error}); install it with: apt-get install wrk") from None
        return
    raise SystemExit("bench: needs wrk, the HTTP load generator: sudo apt-get install wrk (or brew install wrk)")


def load_average() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"


def sections(value: str) -> list[str]:
    chosen = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SECTIONS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"sections are {', '.join(SECTIONS)}, not {value!r}")
    return chosen


def code_folder(value: str) -> Path:
    path = Path(value).resolve()
    if not (path / "lesson_code" / "service.py").is_file():
        raise argparse.ArgumentTypeError(f"{value} holds no lesson_code/service.py")
    return path


class OtherLoad:
    """How many cores processes other than this bench (and the servers and wrk it starts) kept busy since mark().

    Linux only: busy time of every core from /proc/stat, less the CPU time of this process and its finished children.
    """

    def __init__(self) -> None:
        self.mark()

    @staticmethod
    def _busy_seconds() -> float:
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        except OSError:
            return float("nan")
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[:8])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own_seconds() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return sum(usage.ru_utime + usage.ru_stime for usage in own)

    def mark(self) -> None:
        self.started, self.busy, self.own = time.monotonic(), self._busy_seconds(), self._own_seconds()

    def cores(self) -> float:
        others = (self._busy_seconds() - self.busy) - (self._own_seconds() - self.own)
        return max(0.0, others / max(1e-9, time.monotonic() - self.started))


def progress(message: str) -> None:
    print(f"bench: {message} (load average {load_average()})", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run (default 5)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each ratio, interleaved (default 3)")
    parser.add_argument("--compare", action="store_true", help="also run the login storm for the other variants")
    parser.add_argument("--only", type=sections, default=list(SECTIONS), help=f"some of: {','.join(SECTIONS)}")
    parser.add_argument(
        "--code", type=code_folder, default=ROOT, help="the folder holding the lesson_code to serve (default: this one)"
    )
    args = parser.parse_args()
    if args.seconds < 1 or args.repeat < 1:
        parser.error("--seconds and --repeat must be at least 1")
    if "resource" in args.only and not (args.code / "lesson_code" / "resource_server.py").is_file():
        parser.error(f"--only resource: {args.code} holds no lesson_code/resource_server.py")
    # kill(1) and a closing terminal end the bench as Ctrl-C does: through the finally blocks that stop its servers.
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda number, frame: sys.exit(128 + number))
    ensure_wrk()
    secret = secrets.token_hex(32)
    started_load = load_average()
    other_load, whole_bench, others = OtherLoad(), OtherLoad(), []
    rows: list[tuple[str, str, str]] = []
    runs = defaultdict(list)
    variants = ["lesson", "unlimited", "on-loop"] if args.compare else ["lesson"]

    with stopping_wrk(), tempfile.TemporaryDirectory() as folder:
        scripts = {"login": LOGIN_SCRIPT + STATUS_SCRIPT, "guess": GUESS_SCRIPT + STATUS_SCRIPT}
        scripts["refresh"] = REFRESH_SCRIPT
        for name, text in list(scripts.items()):
            scripts[name] = str(Path(folder, f"{name}.lua"))
            Path(scripts[name]).write_text(text)
        if "guessing" in args.only:
            for name, settings in [("default limits", None), ("limits lifted", LIMITS_LIFTED)]:
                progress(f"guessing storm, {name}")
                rows += guessing_rows(name, *guessing_storm(secret, 3 * args.seconds, scripts["guess"], settings))
        wrk_sections = {"storm", "protection", "refresh", "resource"} & set(args.only)
        for repeat in range(1, args.repeat + 1) if wrk_sections else []:
            other_load.mark()
            if "storm" in args.only:
                for variant in variants:
                    progress(f"run {repeat}/{args.repeat}: login storm, app.py [{variant}]")
                    runs[f"storm {variant}"].append(login_storm(APP, variant, secret, args.seconds, scripts, args.code))
                progress(f"run {repeat}/{args.repeat}: login storm, service.py")
                runs["storm service"].append(login_storm(SERVICE, "lesson", secret, args.seconds, scripts, args.code))
            if "protection" in args.only:
                progress(f"run {repeat}/{args.repeat}: protection cost, app.py and service.py")
                runs["protection app"].append(protection_cost(APP, secret, args.seconds, args.code))
                runs["protection service"].append(protection_cost(SERVICE, secret, args.seconds, args.code))
            if "refresh" in args.only:
                progress(f"run {repeat}/{args.repeat}: refresh vs login, service.py")
                runs["refresh"].append(refresh_against_login(secret, args.seconds, scripts, folder, args.code))
            if "resource" in args.only:
                progress(f"run {repeat}/{args.repeat}: protection cost, resource_server.py (ES256, service.py issuing)")
                runs["resource"].append(resource_server_cost(secret, args.seconds, args.code))
            others.append(other_load.cores())
            progress(f"run {repeat}/{args.repeat} done: other processes kept {others[-1]:.2f} cores busy meanwhile")

    if "storm" in args.only:
        notes = {"lesson": "target >= 0.50", "unlimited": "no hashing limit", "on-loop": "Argon2 on the event loop"}
        for variant in variants:
            rows.append(storm_row(f"app.py [{variant}]", runs[f"storm {variant}"], notes[variant]))
        rows.append(storm_row("service.py", runs["storm service"], "target >= 0.80"))
    if "protection" in args.only:
        rows.append(protection_row("app.py /users/me, token checked", runs["protection app"], "the token check alone"))
        rows.append(
            protection_row(
                "service.py /users/me, token, session and user checked in SQL", runs["protection service"], ">= 0.50"
            )
        )
        rows.append(bare_row("service.py /users/me", runs["protection service"], "target >= 0.60"))
    if "refresh" in args.only:
        rows.append(refresh_row(runs["refresh"], args.seconds))
    if "resource" in args.only:
        rows.append(
            protection_row(
                "resource_server.py /profile, ES256 token checked with the issuer's public key",
                runs["resource"],
                "app.py's HS256 above",
            )
        )
        rows.append(bare_row("resource_server.py /profile", runs["resource"], "target >= 0.50"))
    if "tokens" in args.only:
        costs = token_costs(secret) + [row for algorithm in SIGNED_ALGORITHMS for row in signed_token_costs(algorithm)]
        for name, figure in with_ratios(costs):
            rows.append((f"per token, {name}", figure, "best of 5"))

    python = sys.version.split()[0]
    print(
        f"# make bench: {os.cpu_count()} cores, Python {python}, wrk on uvicorn (one worker) at 127.0.0.1,"
        f" {args.seconds} s a run, ratios best of {args.repeat}\n"
        f"# load average (1, 5, 15 min) before: {started_load}; after: {load_average()} (the bench itself loads"
        f" both cores); other processes kept {whole_bench.cores():.2f} cores busy on average meanwhile"
        + (f" ({', '.join(f'{cores:.2f}' for cores in others)} in the runs 1 to {len(others)})" if others else "")
        + "\n"
    )
    print("| what | figure (best run) | spread |\n| --- | --- | --- |")
    for what, figure, spread in rows:
        print(f"| {what} | {figure} | {spread} |")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("bench: interrupted; the servers and wrk it started are stopped", file=sys.stderr)
        sys.exit(130)
