"""The lesson's secret, for tokens.py: JWT_SECRET_KEY from the environment, else a random one made once and kept in
a private file (JWT_SECRET_FILE, by default .jwt_secret at the repository's root), read once, on first use.

This is the lessons' and the finished apps' choice, and only a fallback: tokens.py signs with any key it is given
(tokens.hmac_key(your_settings.secret)), and reads this file only when given none. Nothing is read at import.
"""

import functools
import os
import secrets
import stat
from pathlib import Path

from lesson_code.tokens import ENV_VAR, MAX_SECRET_LENGTH, MIN_SECRET_BITS, SecretKeyError, check_secret_key

FILE_ENV_VAR = "JWT_SECRET_FILE"
# Next to the folder that holds this file: for lesson_code/secret_file.py, the repository's root, whatever the
# current folder, so the notebooks, the apps and the command line share one secret. Copied elsewhere: set
# JWT_SECRET_FILE, or better, give the token functions a key of your own (tokens.hmac_key).
DEFAULT_SECRET_FILE = Path(__file__).resolve().parent.parent / ".jwt_secret"


def secret_file_path() -> Path:
    """Where the secret is kept when JWT_SECRET_KEY is unset: JWT_SECRET_FILE, or .jwt_secret in the repository."""
    return Path(os.environ.get(FILE_ENV_VAR) or DEFAULT_SECRET_FILE)


@functools.cache
def get_secret_key() -> str:
    """The signing secret, checked, read once on first use: JWT_SECRET_KEY, else the secret file (made if missing)."""
    if ENV_VAR in os.environ:
        return check_secret_key(os.environ[ENV_VAR])
    path = secret_file_path()
    try:
        try:
            text = _read_secret_file(path)
        except FileNotFoundError:
            _create_secret_file(path)
            text = _read_secret_file(path)
    except OSError as error:
        raise SecretKeyError(f"cannot keep a secret in {path} ({error}); set {ENV_VAR} instead") from None
    return check_secret_key(text.strip(), source=str(path))


def _read_secret_file(path: Path) -> str:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError:
        if path.is_symlink():
            raise _unsafe(path, "is a symbolic link, so someone else may have chosen the secret") from None
        raise
    try:
        _check_secret_file(path, os.fstat(descriptor))
        data = os.read(descriptor, MAX_SECRET_LENGTH + 2)
    finally:
        os.close(descriptor)
    if len(data) > MAX_SECRET_LENGTH + 1:
        raise _unsafe(path, f"is over {MAX_SECRET_LENGTH} bytes, too long for a secret")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise _unsafe(path, "is not UTF-8 text") from None


def _check_secret_file(path: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise _unsafe(path, "is not a regular file")
    if not hasattr(os, "getuid"):
        return
    if info.st_uid != os.getuid():
        raise _unsafe(path, f"belongs to user {info.st_uid}, not to you (user {os.getuid()})")
    if info.st_mode & 0o077:
        raise SecretKeyError(
            f"{path} can be read or changed by other users (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"run: chmod 600 {path}"
        )


def _unsafe(path: Path, problem: str) -> SecretKeyError:
    return SecretKeyError(f"{path} {problem}; delete it to have a new secret made, or set {ENV_VAR}")


def _create_secret_file(path: Path) -> None:
    draft = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_hex(MIN_SECRET_BITS // 8) + "\n")
    try:
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()
