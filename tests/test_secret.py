import faulthandler
import math
import multiprocessing
import os
import re
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from lesson_code import secret_file as secret_module
from lesson_code.secret_file import get_secret_key, secret_file_path
from lesson_code.tokens import SecretKeyError, check_secret_key, secret_bits

ROOT = Path(__file__).resolve().parent.parent
HOW = 'make one with: python -c "import secrets; print(secrets.token_hex(32))"'
RANDOM_SAMPLES = 5000


def too_weak(bits: int, source: str = "JWT_SECRET_KEY") -> str:
    return f"{source} holds about {bits} bits of randomness; HS256 needs at least 256 (RFC 7518, section 3.2): {HOW}"


def planted(path: Path, problem: str) -> str:
    return f"{path} {problem}; delete it to have a new secret made, or set JWT_SECRET_KEY"


PUBLISHED = f"JWT_SECRET_KEY is a secret published in a tutorial, so anyone can forge tokens: {HOW}"
WEAK_SECRETS = {
    "empty": ("", f"JWT_SECRET_KEY is empty: {HOW}"),
    "32 spaces": (" " * 32, too_weak(6)),
    "a * 32": ("a" * 32, too_weak(4)),
    "password * 4": ("password" * 4, too_weak(37)),
    "seed lesson's": ("mysecretkey123", too_weak(72)),
    "your-secret-key": ("your-secret-key", too_weak(33)),
    "changethis": ("changethis", too_weak(47)),
    "token_hex(16)": ("8f14e45fceea167a5a36dedd4bea2543", too_weak(128)),
    "token_urlsafe(16)": ("Zm9vYmFyYmF6cXV4cXV1eA", too_weak(132)),
    "a long phrase": ("this-is-my-very-long-secret-key-for-jwt-signing-2024", too_weak(123)),
    "four common words": ("correct horse battery staple", too_weak(44)),
    "capitalised words": ("Correct-Horse-Battery-Staple-42", too_weak(50)),
    "hex repeated": ("0123456789abcdef" * 4, too_weak(64)),
    "é * 16": ("é" * 16, too_weak(6)),
    "FastAPI tutorial's": ("09d25e094faa6ca2556c818166b7a9563b93f7099f6f0f4caa6cf63b88e8d3e7", PUBLISHED),
    "RFC 7515's example key": (
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
        PUBLISHED,
    ),
    "over 1024 characters": (
        secrets.token_hex(513),
        f"JWT_SECRET_KEY is over 1024 characters, too long for a secret: {HOW}",
    ),
    "not UTF-8": ("\udcff" + secrets.token_hex(32), f"JWT_SECRET_KEY is not UTF-8 text: {HOW}"),
    "an SSH public key": (
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7" + secrets.token_urlsafe(48),
        f"JWT_SECRET_KEY is a public key or certificate, not an HMAC secret: {HOW}",
    ),
}


@pytest.mark.parametrize(("secret", "message"), WEAK_SECRETS.values(), ids=WEAK_SECRETS.keys())
def test_weak_secrets_are_refused_with_how_to_make_one(monkeypatch, tmp_path, secret, message):
    monkeypatch.setenv("JWT_SECRET_KEY", secret)
    monkeypatch.setenv("JWT_SECRET_FILE", str(tmp_path / ".jwt_secret"))
    with pytest.raises(SecretKeyError) as caught:
        get_secret_key()
    assert str(caught.value) == message
    assert os.listdir(tmp_path) == []


def test_a_secret_given_as_bytes_is_refused_in_one_line():
    with pytest.raises(SecretKeyError) as caught:
        check_secret_key(secrets.token_bytes(32))
    assert str(caught.value) == f"JWT_SECRET_KEY is bytes, not text: {HOW}"


@pytest.mark.parametrize(
    ("secret", "bits"),
    [
        ("0123456789" * 8, 10 * math.log2(10)),  # digits: the period repeats
        (secrets.token_hex(32), 256),  # 64 characters of 16: 4 bits each
        (secrets.token_hex(32).upper(), 256),
        (secrets.token_urlsafe(32), 43 * 6),  # base64url: 6 bits each
        ("xyz" * 4, 3 * math.log2(26)),  # a repeat may overlap what it repeats
        ("abcdefgh" + "abcdefgh", 8 * math.log2(26)),
        ("one two", 2 * 11),  # two words, read as words
        ("Hello, World! 0123456789", 2 * 11 + 10 * math.log2(10)),  # words and a number
        ("2024-01-01 12:00", 16 * math.log2(95)),  # numbers alone are not words: printable ASCII
        ("p@ss-W0rd!", 10 * math.log2(95)),  # W0rd is not a word
    ],
    ids=[
        "digits",
        "hex",
        "HEX",
        "base64url",
        "period 3",
        "repeat",
        "words",
        "words and number",
        "numbers",
        "printable",
    ],
)
def test_secret_bits(secret, bits):
    assert secret_bits(secret) == pytest.approx(bits)


@pytest.mark.parametrize("make", [lambda: secrets.token_hex(32), lambda: secrets.token_urlsafe(32)], ids=["hex", "url"])
def test_a_random_32_byte_secret_is_never_refused(make):
    refused = [secret for secret in (make() for _ in range(RANDOM_SAMPLES)) if secret_bits(secret) < 256]
    assert refused == []


@pytest.mark.parametrize(
    "secret",
    [
        secrets.token_hex(32),
        secrets.token_urlsafe(32),
        secrets.token_hex(48),
        '["x", "' + secrets.token_hex(32) + '"]',
        '"' + secrets.token_hex(32) + '"',
        "prefix-" + secrets.token_hex(32),
    ],
    ids=["token_hex(32)", "token_urlsafe(32)", "token_hex(48)", "JSON list", "quoted", "prefixed"],
)
def test_strong_secrets_pass_unchanged(secret):
    assert check_secret_key(secret) == secret


def test_the_message_names_its_source():
    with pytest.raises(SecretKeyError) as caught:
        check_secret_key("a" * 32, source="/srv/app/.jwt_secret")
    assert str(caught.value) == too_weak(4, "/srv/app/.jwt_secret")


def test_the_environment_wins_over_the_file(monkeypatch, tmp_path):
    key = secrets.token_hex(32)
    path = tmp_path / ".jwt_secret"
    path.write_text(secrets.token_hex(32))
    path.chmod(0o600)
    monkeypatch.setenv("JWT_SECRET_KEY", key)
    monkeypatch.setenv("JWT_SECRET_FILE", str(path))
    assert get_secret_key() == key


def test_the_secret_is_read_once_and_cached_until_cleared(monkeypatch):
    first, second = secrets.token_hex(32), secrets.token_hex(32)
    monkeypatch.setenv("JWT_SECRET_KEY", first)
    assert get_secret_key() == first
    monkeypatch.setenv("JWT_SECRET_KEY", second)
    assert get_secret_key() == first
    get_secret_key.cache_clear()
    assert get_secret_key() == second


def test_importing_reads_neither_the_disk_nor_the_environment(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "JWT_SECRET_KEY"}
    env.update({"JWT_SECRET_FILE": str(tmp_path / ".jwt_secret"), "PYTHONPATH": str(ROOT)})
    code = "import lesson_code.tokens, lesson_code.cli; print('imported')"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "imported\n", "")
    assert os.listdir(tmp_path) == []
    env["JWT_SECRET_KEY"] = "changethis"  # refused on first use, not on import
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "imported\n", "")


def test_the_default_file_is_next_to_lesson_code_wherever_you_run_from(monkeypatch, tmp_path):
    monkeypatch.delenv("JWT_SECRET_FILE")
    monkeypatch.chdir(tmp_path)
    assert secret_file_path() == ROOT / ".jwt_secret"
    monkeypatch.setenv("JWT_SECRET_FILE", str(tmp_path / "elsewhere"))
    assert secret_file_path() == tmp_path / "elsewhere"


@pytest.fixture
def secret_file(monkeypatch, tmp_path) -> Path:
    """No JWT_SECRET_KEY: the secret is kept in this file, which does not exist yet."""
    path = tmp_path / ".jwt_secret"
    monkeypatch.delenv("JWT_SECRET_KEY")
    monkeypatch.setenv("JWT_SECRET_FILE", str(path))
    return path


def test_without_environment_a_secret_file_is_made_once_and_reused(secret_file):
    first = get_secret_key()
    assert len(bytes.fromhex(first)) == 32
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    get_secret_key.cache_clear()
    assert get_secret_key() == first
    assert os.listdir(secret_file.parent) == [".jwt_secret"]


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_good_secret_file_of_your_own_is_used(secret_file, mode):
    key = secrets.token_urlsafe(32)
    secret_file.write_text(f"{key}\n")
    secret_file.chmod(mode)
    assert get_secret_key() == key


def test_a_weak_secret_file_is_refused_naming_the_file(secret_file):
    secret_file.write_text("short\n")
    secret_file.chmod(0o600)
    with pytest.raises(SecretKeyError) as caught:
        get_secret_key()
    assert str(caught.value) == too_weak(23, str(secret_file))


def test_an_unwritable_folder_says_to_set_the_variable(monkeypatch, tmp_path):
    path = tmp_path / "missing-folder" / ".jwt_secret"
    monkeypatch.delenv("JWT_SECRET_KEY")
    monkeypatch.setenv("JWT_SECRET_FILE", str(path))
    message = rf"cannot keep a secret in {re.escape(str(path))} \(\[Errno 2\] .*\); set JWT_SECRET_KEY instead"
    with pytest.raises(SecretKeyError, match=f"^{message}$"):
        get_secret_key()


needs_posix = pytest.mark.skipif(not hasattr(os, "getuid"), reason="owner and mode bits are POSIX")


def plant_symlink(path: Path) -> None:
    target = path.with_name("chosen-by-someone-else")
    target.write_text(secrets.token_hex(32))
    target.chmod(0o600)
    path.symlink_to(target)


def plant_file(path: Path, content: bytes, mode: int = 0o600, owner: int | None = None) -> None:
    path.write_bytes(content)
    path.chmod(mode)
    if owner is not None:
        os.chown(path, owner, owner)


PLANTED = {
    "symlink": (plant_symlink, "is a symbolic link, so someone else may have chosen the secret"),
    "FIFO": (os.mkfifo, "is not a regular file"),
    "directory": (Path.mkdir, "is not a regular file"),
    "mode 0644": (
        lambda path: plant_file(path, secrets.token_hex(32).encode(), 0o644),
        "can be read or changed by other users (mode 0644); run: chmod 600 {path}",
    ),
    "mode 0640": (
        lambda path: plant_file(path, secrets.token_hex(32).encode(), 0o640),
        "can be read or changed by other users (mode 0640); run: chmod 600 {path}",
    ),
    "mode 0620": (
        lambda path: plant_file(path, secrets.token_hex(32).encode(), 0o620),
        "can be read or changed by other users (mode 0620); run: chmod 600 {path}",
    ),
    "not UTF-8": (lambda path: plant_file(path, b"\xff\xfe" + secrets.token_bytes(40)), "is not UTF-8 text"),
    "huge": (lambda path: plant_file(path, b"0" * 10_000_000), "is over 1024 bytes, too long for a secret"),
}


@needs_posix
@pytest.mark.parametrize(("plant", "problem"), PLANTED.values(), ids=PLANTED.keys())
def test_a_planted_secret_file_is_refused_in_one_line(secret_file, plant, problem):
    plant(secret_file)
    faulthandler.dump_traceback_later(30, exit=True)  # a FIFO opened without O_NONBLOCK would wait for ever
    try:
        with pytest.raises(SecretKeyError) as caught:
            get_secret_key()
    finally:
        faulthandler.cancel_dump_traceback_later()
    if "{path}" in problem:
        expected = f"{secret_file} {problem.format(path=secret_file)}"
    else:
        expected = planted(secret_file, problem)
    assert str(caught.value) == expected


@needs_posix
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="giving a file away needs root")
def test_a_secret_file_owned_by_someone_else_is_refused(secret_file):
    plant_file(secret_file, secrets.token_hex(32).encode(), owner=65534)
    with pytest.raises(SecretKeyError) as caught:
        get_secret_key()
    assert str(caught.value) == planted(secret_file, f"belongs to user 65534, not to you (user {os.getuid()})")


def test_an_empty_secret_file_is_refused(secret_file):
    plant_file(secret_file, b"")
    with pytest.raises(SecretKeyError) as caught:
        get_secret_key()
    assert str(caught.value) == f"{secret_file} is empty: {HOW}"


def test_reading_a_secret_file_is_bounded(monkeypatch, secret_file):
    plant_file(secret_file, b"0" * 10_000_000)
    asked = []
    read = os.read
    monkeypatch.setattr(secret_module.os, "read", lambda fd, size: asked.append(size) or read(fd, size))
    with pytest.raises(SecretKeyError):
        get_secret_key()
    assert asked == [1026]


def _first_start(barrier, path, results):
    del os.environ["JWT_SECRET_KEY"]  # inherited; the children share only the file
    os.environ["JWT_SECRET_FILE"] = str(path)
    barrier.wait()
    results.put(get_secret_key())


def test_concurrent_first_starts_agree_on_one_secret(tmp_path):
    context = multiprocessing.get_context("spawn")
    workers = 6
    for round_number in range(5):
        path = tmp_path / f"secret-{round_number}"
        barrier, results = context.Barrier(workers), context.Queue()
        processes = [context.Process(target=_first_start, args=(barrier, path, results)) for _ in range(workers)]
        for process in processes:
            process.start()
        secrets_seen = {results.get(timeout=60) for _ in processes}
        for process in processes:
            process.join(timeout=60)
        assert [process.exitcode for process in processes] == [0] * workers
        assert secrets_seen == {path.read_text().strip()}
    assert sorted(os.listdir(tmp_path)) == [f"secret-{n}" for n in range(5)]
