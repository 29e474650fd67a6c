"""make bench: how the lesson's API holds up, measured with wrk against uvicorn on 127.0.0.1.

    python tools/bench.py [--seconds N] [--compare]

0. Guessing storm: 400 connections guess alice's password while she logs in from another address: the share of
   guesses answered 401, 429 (limits) and 503 (hashing queue full), her share of 200 and her login latency;
   once with the default limits, once with the limits lifted (guesses from more addresses than they can tell apart).
   It runs three times as long as the other runs: the limits stop a guesser only once its first failures are hashed.
1. Login storm: /users/me throughput while four clients log in non-stop, as a share of its idle throughput.
2. Protection cost: /users/me (token checked) against the same handler without protection.
3. Encode and decode time per token: lesson_code against bare python-jose and a standard-library HMAC floor.
--compare runs the login storm for the variants in tools/bench_app.py too (hashing on the event loop, or
in threads without a limit), to show what the lesson's design buys.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
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
STORM_CONNECTIONS = 400
# As if the guesses came from more addresses than the limits can tell apart: only the hashing queue stands.
LIMITS_LIFTED = {
    "LOGIN_FAILURES_PER_ACCOUNT": "1000000/hour",
    "LOGIN_FAILURES_PER_CLIENT": "1000000/hour",
    "LOGIN_FAILURES_PER_ACCOUNT_AND_CLIENT": "1000000/hour",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def server(variant: str, secret: str, settings: dict | None = None):
    """uvicorn, one worker, in its own process; stopped on leaving the block."""
    port = free_port()
    env = {
        **os.environ,
        **(settings or {}),
        "JWT_SECRET_KEY": secret,
        "BENCH_VARIANT": variant,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tools'}",
    }
    command = [sys.executable, "-m", "uvicorn", "bench_app:app", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen([*command, "--log-level", "warning", "--no-access-log"], env=env, cwd=ROOT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{base_url}/openapi.json", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("bench: the server did not start") from None
                time.sleep(0.1)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_wrk(url: str, seconds: int, connections: int, *extra: str) -> subprocess.Popen:
    command = ["wrk", "--threads", "1", "--connections", str(connections), "--duration", f"{seconds}s", *extra, url]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def wrk_report(process: subprocess.Popen) -> dict:
    """The figures of wrk's printed report, and how many answers had each status when STATUS_SCRIPT counted them."""
    output = process.communicate()[0]
    if process.returncode != 0 or "Requests/sec" not in output:
        raise SystemExit(f"bench: wrk failed:\n{output}")
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1]),
        "requests": int(re.search(r"(\d+) requests in", output)[1]),
        "failed": int(failed[1]) if failed else 0,
        "socket_errors": errors[1] if errors else "none",
        "max_latency": re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", output)[1],
        "statuses": {int(code): int(count) for code, count in re.findall(r"^status (\d+): (\d+)$", output, re.M)},
    }


def get_token(base_url: str) -> str:
    response = httpx.post(f"{base_url}/token", data={"username": "alice", "password": "wonderland"})
    response.raise_for_status()
    return response.json()["access_token"]


def users_me(base_url: str, token: str, seconds: int, path: str = "/users/me") -> subprocess.Popen:
    return start_wrk(f"{base_url}{path}", seconds, 16, "--header", f"Authorization: Bearer {token}")


def login_storm(variant: str, secret: str, seconds: int, login_script: str) -> dict:
    with server(variant, secret) as base_url:
        token = get_token(base_url)
        idle = wrk_report(users_me(base_url, token, seconds))
        readers = users_me(base_url, token, seconds)
        logins = start_wrk(f"{base_url}/token", seconds, 4, "--script", login_script, "--timeout", "30s")
        storm, login = wrk_report(readers), wrk_report(logins)
    return {"idle": idle, "storm": storm, "login": login}


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
    with server("lesson", secret, settings) as base_url:
        guesses = start_wrk(
            f"{base_url}/token", seconds, STORM_CONNECTIONS, "--script", guess_script, "--timeout", "30s"
        )
        alice = legitimate_logins(base_url, seconds)
        return wrk_report(guesses), alice


def share(statuses: dict, status: int) -> str:
    return f"{statuses.get(status, 0) / max(1, sum(statuses.values())):.0%}"


def describe_storm(name: str, guesses: dict, alice: dict) -> str:
    latencies = alice["latencies"]
    figures = (
        f"p50 {statistics.median(latencies) * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms"
        if latencies
        else "none succeeded"
    )
    return (
        f"Guessing storm [{name}]: {STORM_CONNECTIONS} connections, {guesses['requests']} guesses"
        f" ({guesses['rps']:.0f}/s): 401 {share(guesses['statuses'], 401)}, 429 {share(guesses['statuses'], 429)},"
        f" 503 {share(guesses['statuses'], 503)}\n"
        f"  alice meanwhile, from another address: {sum(alice['statuses'].values())} logins, 200"
        f" {share(alice['statuses'], 200)}, 503 {share(alice['statuses'], 503)}; latency of her successful logins"
        f" {figures}"
    )


def protection_cost(secret: str, seconds: int) -> tuple[dict, dict]:
    with server("lesson", secret) as base_url:
        token = get_token(base_url)
        protected = wrk_report(users_me(base_url, token, seconds))
        unprotected = wrk_report(users_me(base_url, token, seconds, "/bench/unprotected-me"))
    return protected, unprotected


def per_call(function, *args) -> float:
    runs, total = timeit.Timer(lambda: function(*args)).autorange()
    best = min(timeit.repeat(lambda: function(*args), number=runs, repeat=5))
    return best / runs * 1e6


def token_costs(secret: str) -> list[tuple[str, float, float]]:
    os.environ["JWT_SECRET_KEY"] = secret
    sys.path.insert(0, str(ROOT))
    from jose import jwt

    from lesson_code import tokens

    claims = {"sub": "alice"}
    token = tokens.create_access_token(claims)
    full = jwt.get_unverified_claims(token)
    key = secret.encode()

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
            "lesson_code (create / decode_access_token)",
            per_call(tokens.create_access_token, claims),
            per_call(tokens.decode_access_token, token),
        ),
        (
            "bare python-jose (jwt.encode / jwt.decode)",
            per_call(jwt.encode, full, secret, "HS256"),
            per_call(jwt.decode, token, secret, ["HS256"]),
        ),
        ("standard-library HMAC floor", per_call(hmac_encode), per_call(hmac_decode, token)),
    ]


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        print("bench: installing wrk (Debian's package)")
        try:
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL)
        except subprocess.CalledProcessError as error:
            raise SystemExit(f"bench: could not install wrk ({error}); install it with: apt-get install wrk") from None
        return
    raise SystemExit("bench: needs wrk, the HTTP load generator: sudo apt-get install wrk (or brew install wrk)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run (default 5)")
    parser.add_argument("--compare", action="store_true", help="also run the login storm for the other variants")
    args = parser.parse_args()
    ensure_wrk()
    secret = secrets.token_hex(32)
    python = sys.version.split()[0]
    print(
        f"# make bench: {os.cpu_count()} cores, Python {python}, wrk on uvicorn at 127.0.0.1, {args.seconds} s a run\n"
    )

    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder, "login.lua")
        script.write_text(LOGIN_SCRIPT)
        guess_script = Path(folder, "guess.lua")
        guess_script.write_text(GUESS_SCRIPT + STATUS_SCRIPT)
        for name, settings in [("default limits", None), ("limits lifted, as from many addresses", LIMITS_LIFTED)]:
            print(describe_storm(name, *guessing_storm(secret, 3 * args.seconds, str(guess_script), settings)))
        print()
        for variant in ["lesson", "unlimited", "on-loop"] if args.compare else ["lesson"]:
            run = login_storm(variant, secret, args.seconds, str(script))
            idle, storm, login = run["idle"], run["storm"], run["login"]
            print(
                f"Login storm [{variant}]: /users/me {storm['rps']:.0f} req/s during the storm vs {idle['rps']:.0f} idle"
                f" = ratio {storm['rps'] / idle['rps']:.2f} (target >= 0.50)"
            )
            print(
                f"  logins: {login['rps']:.1f}/s by 4 clients, {login['requests']} made, {login['failed']} failed,"
                f" max latency {login['max_latency']}; /users/me failures: {storm['failed'] + idle['failed']},"
                f" socket errors: {login['socket_errors']}"
            )

    protected, unprotected = protection_cost(secret, args.seconds)
    print(
        f"\nProtection cost: /users/me {protected['rps']:.0f} req/s with the token checked vs {unprotected['rps']:.0f}"
        f" for the same handler unprotected = ratio {protected['rps'] / unprotected['rps']:.2f}"
    )

    print("\nPer token, best of 5 (microseconds):            encode   decode")
    for name, encode, decode in token_costs(secret):
        print(f"  {name:<45} {encode:7.1f}  {decode:7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
