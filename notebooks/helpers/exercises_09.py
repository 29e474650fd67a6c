"""Notebook 09's exercises: each check reads the answer from the notebook's names (a.origin_of) and returns True, a
sentence saying what is off, or False (the general hint). See helpers/checks.py."""

from helpers.checks import exercise

# (URL, its origin, what an answer that gets it wrong has missed)
ORIGIN_CASES = [
    ("http://127.0.0.1:8000/app", "http://127.0.0.1:8000", "the path is not part of an origin."),
    ("http://127.0.0.1:8001/evil?x=1#top", "http://127.0.0.1:8001", "the query and the fragment are not part of it "
     "either; the port is."),
    ("HTTP://Example.COM/Login", "http://example.com", "a browser writes the scheme and the host in lower case."),
    ("https://example.com:443/", "https://example.com", "the default port (443 for https, 80 for http) is left out."),
    ("http://example.com:80/a", "http://example.com", "the default port (80 for http) is left out."),
    ("http://example.com:8080/a", "http://example.com:8080", "a port that is not the scheme's default is kept."),
    ("https://alice:secret@example.com/", "https://example.com", "a user name and password in the URL are no part "
     "of its origin (and are never sent in Origin)."),
]  # fmt: skip


@exercise(
    "scheme, '://', host, and ':port' only when the port is not the scheme's default; all lower case, no path.",
    answers=("origin_of",),
)
def origin_of(a):
    answer = a.origin_of
    if answer is None:
        return False
    if not callable(answer):
        return "origin_of should be a function: def origin_of(url: str) -> str: ..."
    for url, expected, hint in ORIGIN_CASES:
        try:
            got = answer(url)
        except NameError:
            raise
        except Exception as error:
            return f"origin_of({url!r}) raised {type(error).__name__}: {error}. Hint: {hint}"
        if not isinstance(got, str):
            return f"origin_of should return the origin as a string, such as {expected!r}, not {got!r}."
        if got.endswith(":None"):
            return f"origin_of({url!r}) is {got!r}: the port is None when the URL names none; leave it out then."
        if got.endswith("/"):
            return f"origin_of({url!r}) is {got!r}: an origin has no path, not even '/'."
        if got != expected:
            return f"origin_of({url!r}) should be {expected!r}, not {got!r}: {hint}"
    return True


def _sent(response) -> dict:
    return {name.lower(): value for name, value in response.request.headers.items()}


def _what_is_off(response, a) -> str | None:
    """What the forged request lacks to be what an auto-submitting form on attacker_url makes the browser send."""
    if not hasattr(response, "request") or not hasattr(response, "status_code"):
        kind = type(response).__name__
        return f"forged_sign_out should return httpx's Response (what httpx.post returns), not {kind}."
    request, headers = response.request, _sent(response)
    if request.method != "POST":
        return f"a form with method='post' sends POST, not {request.method}."
    if not str(request.url).endswith("/app/session/logout"):
        return f"the form's action is target + '/app/session/logout', not {request.url}."
    if "origin" not in headers:
        return "a browser sends Origin with every POST, a form's too: the attacker page's origin, attacker_url."
    if headers["origin"] != a.attacker_url:
        return f"Origin should be the attacker page's origin, attacker_url ({a.attacker_url}), not {headers['origin']}."
    if headers.get("sec-fetch-site") != "same-site":
        return (
            "127.0.0.1 on another port is the same site (not the same origin): the browser says so in Sec-Fetch-Site. "
            f"Yours sent {headers.get('sec-fetch-site')!r}."
        )
    if f"{a.REFRESH_COOKIE}=" not in headers.get("cookie", ""):
        return (
            "SameSite=Strict lets the cookie go with a same-site request: the browser sends it as the Cookie header, "
            "REFRESH_COOKIE=value."
        )
    return None


@exercise(
    "send what the browser sends when the attacker's form submits itself: POST to target's /app/session/logout, with "
    "the headers a same-site page's request carries, and the victim's cookie.",
    answers=("forged_sign_out",),
)
def forged_sign_out(a):
    answer = a.forged_sign_out
    if answer is None:
        return False
    if not callable(answer):
        return "forged_sign_out should be a function: def forged_sign_out(target: str, cookie: str): ..."
    access, cookie = a.page_sign_in()
    response = answer(a.base_url, cookie)
    off = _what_is_off(response, a)
    if off:
        return off
    if response.status_code != 403:
        return f"the service answered {response.status_code} {response.text}: look at what your request sends."
    if a.me(access)[0] != 200:
        return "the service refused the request, yet the victim was signed out: run the cells above again."
    access, cookie = a.page_sign_in()
    naive = answer(a.naive_url, cookie)
    if _what_is_off(naive, a) or naive.status_code != 204:
        return f"the naive backend should accept it (204), and answered {naive.status_code}: use target, not base_url."
    if a.me(access)[0] != 401:
        return "the naive backend answered 204, yet the victim is still signed in: send the victim's cookie."
    return True
