"""The notebooks: their final code equals lesson_code/, and every exercise's hidden solution passes its check.

nbval itself (pytest --nbval, configured in pyproject.toml) runs each notebook and compares its outputs.
"""

import re
import shutil

import nbformat
import pytest
from notebook_tools import ROOT, drift, execute, explain, notebook_paths

EXERCISE = "# Write your code here"
SOLUTION = re.compile(r"<details><summary>Solution</summary>\s*```python\n(.*?)```\s*</details>", re.DOTALL)
CHECK_CALL = re.compile(r"^(checks\.)?check\(", re.MULTILINE)  # a check cell calls helpers.checks.check
NOTEBOOKS = notebook_paths()


def test_the_lessons_are_all_there():
    assert [path.name for path in NOTEBOOKS] == [
        "01_anatomy_of_a_jwt.ipynb",
        "02_create_access_token.ipynb",
        "03_inspect_and_verify.ipynb",
        "04_fastapi_app.ipynb",
        "05_attacks_and_defences.ipynb",
        "06a_sessions_refresh_logout.ipynb",
        "06b_sessions_in_the_source.ipynb",
        "07_scopes_and_roles.ipynb",
        "08a_asymmetric_keys_jwks.ipynb",
        "08b_key_rotation_and_pitfalls.ipynb",
        "09_tokens_in_the_browser.ipynb",
    ]


def test_marked_cells_match_lesson_code():
    problems = drift()
    if problems:
        pytest.fail(explain(problems), pytrace=False)


@pytest.fixture
def checkout(tmp_path):
    """A copy of lesson_code/ and notebooks/ to break on purpose."""
    for folder in ("lesson_code", "notebooks"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path


def test_changing_the_default_lifetime_is_caught_with_a_diff(checkout):
    tokens = checkout / "lesson_code" / "tokens.py"
    tokens.write_text(
        tokens.read_text().replace("ACCESS_TOKEN_EXPIRE_MINUTES = 15", "ACCESS_TOKEN_EXPIRE_MINUTES = 20")
    )
    assert drift(checkout) == [
        "ACCESS_TOKEN_EXPIRE_MINUTES differs:\n"
        "--- notebooks/02_create_access_token.ipynb (cell 28)\n"
        "+++ lesson_code/tokens.py\n"
        "@@ -1 +1 @@\n"
        "-ACCESS_TOKEN_EXPIRE_MINUTES = 15\n"
        "+ACCESS_TOKEN_EXPIRE_MINUTES = 20"
    ]
    assert "make mirror" in explain(drift(checkout))


def test_a_changed_comment_above_a_definition_is_caught(checkout):
    tokens = checkout / "lesson_code" / "tokens.py"
    source = tokens.read_text()
    assert source.count("\ndef create_access_token(") == 1
    tokens.write_text(
        source.replace("\ndef create_access_token(", "\n# Tokens live for a day.\ndef create_access_token(")
    )
    [problem] = drift(checkout)
    assert problem.startswith("create_access_token differs:\n--- notebooks/02_create_access_token.ipynb (cell ")
    assert "\n+# Tokens live for a day.\n" in problem


def test_a_changed_function_body_is_caught(checkout):
    tokens = checkout / "lesson_code" / "tokens.py"
    source = tokens.read_text()
    assert source.count("    for rule in CLAIM_CHECKS:\n") == 1
    tokens.write_text(source.replace("    for rule in CLAIM_CHECKS:\n", "    for rule in CLAIM_CHECKS[1:]:\n"))
    [problem] = drift(checkout)
    assert problem.startswith("decode_access_token differs:\n--- notebooks/03_inspect_and_verify.ipynb (cell ")
    assert "\n-    for rule in CLAIM_CHECKS:\n+    for rule in CLAIM_CHECKS[1:]:\n" in problem


def test_a_public_function_missing_from_the_notebooks_is_caught(checkout):
    tokens = checkout / "lesson_code" / "tokens.py"
    tokens.write_text(tokens.read_text() + "\n\ndef rotate_secret() -> None:\n    pass\n")
    assert drift(checkout) == [
        "lesson_code/tokens.py defines rotate_secret, which no cell marked '# lesson_code/tokens.py' shows."
    ]


def test_a_marked_cell_that_defines_nothing_is_caught(checkout):
    notebook = checkout / "notebooks" / "01_anatomy_of_a_jwt.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("# lesson_code/tokens.py\nprint('hello')"))
    nbformat.write(nb, notebook)
    cell = f"notebooks/01_anatomy_of_a_jwt.ipynb (cell {len(nb.cells)})"
    assert drift(checkout) == [f"{cell} is marked lesson_code/tokens.py but defines nothing."]


def exercises(nb) -> tuple[list[int], list[str]]:
    cells = [index for index, cell in enumerate(nb.cells) if cell.cell_type == "code" and EXERCISE in cell.source]
    solutions = [match for cell in nb.cells if cell.cell_type == "markdown" for match in SOLUTION.findall(cell.source)]
    return cells, solutions


def check_outputs(nb) -> list[str]:
    return [
        "".join(output.get("text", "") for output in cell.outputs)
        for cell in nb.cells
        if cell.cell_type == "code" and CHECK_CALL.search(cell.source) and EXERCISE not in cell.source
    ]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_committed_exercises_are_unanswered_and_say_not_yet(notebook):
    nb = nbformat.read(notebook, as_version=4)
    cells, solutions = exercises(nb)
    assert len(cells) >= 1
    assert len(solutions) == len(cells)
    outputs = check_outputs(nb)
    assert len(outputs) == len(cells)
    assert all(output.startswith("❌ Not yet. Hint: ") for output in outputs), outputs


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_every_hidden_solution_passes_its_check(notebook):
    nb = nbformat.read(notebook, as_version=4)
    cells, solutions = exercises(nb)
    for index, solution in zip(cells, solutions, strict=True):
        nb.cells[index].source = solution
    outputs = check_outputs(execute(nb, notebook.parent))
    assert outputs == ["✅ Solved! Well done.\n"] * len(cells)


# Every notebook: the plausible wrong answers learners gave (issue 19), each refused with a hint naming the mistake.
# Each entry: (exercise number, the wrong answer's source, a piece of the hint its check must give). A hint of None
# runs the source without a check (to put back what a wrong answer broke); a source "cell:<start>" is the notebook's
# cell that starts so, run again. Each notebook runs once: after each
# exercise cell come its wrong answers, each followed by the check cell, then the hidden solution and the check.
PACE_NOTEBOOKS = NOTEBOOKS
FINISHED_CREATE_ACCESS_TOKEN = "cell:# lesson_code/tokens.py\ndef create_access_token("  # that cell's source, again
WRONG_ANSWERS = {
    "01_anatomy_of_a_jwt": [
        (
            1,
            "header_text, payload_text, _ = ticket.split('.')\n"
            "ticket_header = json.loads(b64url_decode(header_text))\n"
            "ticket_claims = json.loads(b64url_decode(payload_text))\n"
            "paris = timezone(datetime(2030, 1, 1, 1) - datetime(2030, 1, 1), 'Europe/Paris')\n"
            "ticket_expires = datetime.fromtimestamp(ticket_claims['exp'], paris)\n"
            "ticket_lifetime = ticket_expires - datetime.fromtimestamp(ticket_claims['iat'], timezone.utc)",
            "in another zone (UTC+0100)",
        ),
        (1, "del ticket_lifetime", "ticket_lifetime is not defined: run your answer's cell"),
        (
            2,
            "def signature_matches(token, key):\n    try:\n        jwt.decode(token, key, algorithms=['HS256'])\n"
            "    except Exception:\n        return False\n    return True",
            "signature_matches calls python-jose",
        ),
        (
            2,
            "def signature_matches(token, key):\n    signing_input, _, signature = token.rpartition('.')\n"
            "    return b64url(hmac.new(key.encode(), signing_input.encode(), sha256).digest()) == signature",
            "your code raised NameError (name 'sha256' is not defined)",
        ),
    ],
    "02_create_access_token": [
        (
            1,
            "tokyo_now = datetime.now(timezone(timedelta(hours=9))).replace(tzinfo=None)\n"
            "bob_token = jwt.encode({'sub': 'bob', 'role': 'admin', 'iat': tokyo_now, 'exp': tokyo_now + "
            "timedelta(hours=1)}, get_signing_key(), algorithm=ALGORITHM)",
            "hours in the future: its iat and exp are naive local times",
        ),
        (
            1,
            "new_york_now = datetime.now(timezone(timedelta(hours=-5))).replace(tzinfo=None)\n"
            "bob_token = jwt.encode({'sub': 'bob', 'role': 'admin', 'iat': new_york_now, 'exp': new_york_now + "
            "timedelta(hours=1)}, get_signing_key(), algorithm=ALGORITHM)",
            "before this notebook's kernel started",
        ),
        (
            1,
            "cell:from datetime import datetime, timedelta\nfrom jose import jwt\n\nSECRET_KEY",
            None,
        ),  # the seed, again
        (
            1,
            "bob_token = create_access_token({'sub': 'bob', 'role': 'admin'}, expires_delta=timedelta(hours=1))",
            "signed with the seed lesson's secret, mysecretkey123",
        ),
        (1, FINISHED_CREATE_ACCESS_TOKEN, None),
        (1, "bob_token = create_access_token({'sub': 'bob', 'role': 'admin'})", "not 3600 (one hour)"),
        (1, "del bob_token", "bob_token is not defined: run your answer's cell"),
        (2, "import hashlib\n\nmy_secret = hashlib.sha256(b'my dog is called rex').hexdigest()", "a hash of a phrase"),
        (2, "my_secret = secrets.token_hex(16)", "32 hex characters carry 128 bits"),
        (
            3,
            "def create_token_for(user, role):\n    minutes = LIFETIMES_IN_MINUTES[role]\n"
            "    return create_access_token({'sub': user, 'role': role}, expires_delta=timedelta(minutes=minutes))",
            "your code raised NameError (name 'LIFETIMES_IN_MINUTES' is not defined)",
        ),
        (
            3,
            "LIFETIMES = {'admin': timedelta(minutes=5), 'editor': timedelta(minutes=15), 'reader': timedelta(hours=1)}\n"
            "def create_token_for(user, role):\n"
            "    return create_access_token({'sub': user, 'role': role}, expires_delta=LIFETIMES.get(role))",
            "an unknown role must raise ValueError",
        ),
    ],
    "03_inspect_and_verify": [
        (
            1,
            "def minutes_left(token):\n    claims = get_unverified_claims(token)\n"
            "    return round((claims['exp'] - claims['iat']) / 60)",
            "that is its lifetime, exp - iat",
        ),
        (
            1,
            "def minutes_left(token):\n    return round((get_unverified_claims(token)['exp'] - time.time()) / 60)",
            "add `import time` to your answer",
        ),
        (
            2,
            "from jose import JWTError\n\ndef is_valid(token):\n    try:\n        decode_access_token(token)\n"
            "    except JWTError:\n        return False\n    return True",
            "is_valid lets TokenError escape",
        ),
        (
            3,
            "def decode_issued_after(token, password_changed):\n    claims = decode_access_token(token)\n"
            "    if 'iat' not in claims or claims['exp'] < password_changed.timestamp():\n"
            "        raise TokenError('issued before the password change')\n    return claims",
            "compare its iat (not exp) with password_changed",
        ),
    ],
    "04_fastapi_app": [
        (
            1,
            "bob_login = client.post('/token', data={'username': 'bob', 'password': 'builder'})",
            "in-process client",
        ),
        (
            2,
            "@app.get('/users/me/greeting')\n"
            "async def read_greeting(current_user: Annotated[UserInDB, Depends(get_current_active_user)]) -> dict:\n"
            "    return {'greeting': f'Hello, {current_user.full_name}'}\n\n\ngreeting_app = app",
            "greeting_app is the notebook's app",
        ),
        (
            2,
            "greeting_app = FastAPI()\n\n\n@greeting_app.get('/users/me/greeting')\n"
            "async def read_greeting(current_user: Annotated[UserInDB, Depends(get_current_user)]) -> dict:\n"
            "    return {'greeting': f'Hello, {current_user.full_name}'}",
            "bob's account is disabled",
        ),
    ],
    "05_attacks_and_defences": [
        (
            1,
            "forged_token = sign(header, payload, 'my-own-key')\nforged_status = me(forged_token)[0]",
            "the header of forged_token is a JSON string",
        ),
        (
            1,
            "forged_token = sign({'alg': 'HS256', 'typ': 'JWT'}, payload, secret_file.get_secret_key())\n"
            "forged_status = me(forged_token)[0]",
            "signed with the server's own key",
        ),
        (
            2,
            "bob_token = jwt.encode({'sub': 'alice', 'exp': 4102444800}, cracked_key, algorithm='HS256')\n"
            "seed_status, lesson_status = me(bob_token, seed_http)[0], me(bob_token)[0]",
            "that token is for alice",
        ),
        (
            3,
            "def forgeries(claims):\n    made_up = 'not-the-server-key-0123456789abcdef'\n"
            "    body = b64url(json.dumps(claims).encode())\n    return [\n"
            "        f'{header_part}.{body}.{signature_part}',\n"
            "        sign({'alg': 'none', 'typ': 'JWT'}, claims, 'whatever'),\n"
            "        sign({'alg': 'HS512', 'typ': 'JWT'}, claims, made_up, hashlib.sha512),\n"
            "        sign({'alg': 'HS256', 'typ': 'JWT', 'kid': 'x'}, claims, made_up),\n    ]",
            "your alg: none token has a signature",
        ),
    ],
    "06a_sessions_refresh_logout": [
        (
            1,
            "def get_me(wallet):\n    bearer = {'Authorization': f\"Bearer {wallet['access_token']}\"}\n"
            "    answer = http.get('/users/me', headers=bearer)\n"
            "    if answer.status_code != 401 or 'refresh_token' not in wallet:\n        return answer.status_code\n"
            "    form = {'grant_type': 'refresh_token', 'refresh_token': wallet['refresh_token']}\n"
            "    wallet.update(http.post('/token', data=form).json())\n"
            "    return http.get('/users/me', headers={'Authorization': f\"Bearer {wallet['access_token']}\"}).status_code",
            "a 400 means the session is over",
        ),
        (
            1,
            "def get_me(wallet):\n    bearer = {'Authorization': f\"Bearer {wallet['access_token']}\"}\n"
            "    answer = http.get('/users/me', headers=bearer)\n"
            "    if answer.status_code != 401:\n        return answer.status_code\n"
            "    form = {'grant_type': 'refresh_token', 'refresh_token': wallet['refresh_token']}\n"
            "    renewed = http.post('/token', data=form)\n    if renewed.status_code != 200:\n        return 401\n"
            "    wallet['access_token'] = renewed.json()['access_token']\n"
            "    return http.get('/users/me', headers={'Authorization': f\"Bearer {wallet['access_token']}\"}).status_code",
            "still holds the spent refresh token",
        ),
    ],
    "06b_sessions_in_the_source": [
        (
            1,
            "def active_sessions(username):\n    query = select(func.count()).select_from(sessions).where(\n"
            "        sessions.c.user_id == username, sessions.c.ended_at.is_(None),\n"
            "        sessions.c.refresh_expires_at > store.utc_now())\n"
            "    with engine.connect() as connection:\n        return connection.scalar(query)",
            "refresh_expires_at is when the session's current refresh token runs out",
        ),
        (
            1,
            "def active_sessions(username):\n    query = select(func.count()).select_from(sessions).where(\n"
            "        sessions.c.user_id == username, sessions.c.ended_at is None)\n"
            "    with engine.connect() as connection:\n        return connection.scalar(query)",
            "Python's `is None` is never SQL",
        ),
        (
            1,
            "def active_sessions(username):\n    query = select(func.count()).select_from(sessions).where(\n"
            "        sessions.c.user_id == username, sessions.c.expires_at > store.utc_now())\n"
            "    with engine.connect() as connection:\n        return connection.scalar(query)",
            "that counts sessions that were logged out",
        ),
    ],
    "07_scopes_and_roles": [
        (
            1,
            "def missing_scopes(scope_claim, needed):\n    return set(needed) <= set(scope_claim.split())",
            "which is whether the token may",
        ),
        (
            1,
            "def missing_scopes(scope_claim, needed):\n    return [name for name in needed if name not in scope_claim]",
            "compare whole names",
        ),
        (
            1,
            "def missing_scopes(scope_claim, needed):\n    return sorted(set(needed) - set(scope_claim.split()))",
            "keep the order of needed",
        ),
        (
            1,
            "def missing_scopes(scope_claim, needed):\n"
            "    return [name for name in needed if name not in scope_claim.split()]",
            "name each missing scope once",
        ),
        (
            1,
            "def missing_scopes(scope_claim, needed):\n"
            "    return [name for name in dict.fromkeys(needed) if name not in scope_claim.split(' ')]",
            "a tab too",
        ),
        (
            2,
            "from fastapi import Security\n\n\nreports_app = FastAPI()\n\n\n@reports_app.get('/reports')\n"
            "def read_reports(claims: Claims) -> dict:\n    if 'reports' not in scopes_of(claims):\n"
            "        raise http_common.insufficient_scope(SecurityScopes(scopes=['reports']))\n"
            "    return {'reader': claims['sub'], 'reports': REPORTS}",
            "the route checks the scope inside itself",
        ),
        (
            2,
            "from fastapi import Security\n\n\ndef get_reader(security_scopes: SecurityScopes, claims: Claims) -> str:\n"
            "    if not set(security_scopes.scopes) <= set(scopes_of(claims)):\n"
            "        raise http_common.insufficient_scope(security_scopes)\n    return claims['sub']\n\n\n"
            "reports_app = FastAPI()\n\n\n@reports_app.get('/reports')\n"
            "def read_reports(reader: Annotated[str, Depends(get_reader)]) -> dict:\n"
            "    return {'reader': reader, 'reports': REPORTS}",
            "Depends passes no scopes",
        ),
    ],
    "08a_asymmetric_keys_jwks": [
        (
            1,
            "def kid_of(public_jwk):\n    members = {k: v for k, v in public_jwk.items() if k in ('crv', 'kty', 'x', 'y')}\n"
            "    canonical = json.dumps(members, separators=(',', ':'), sort_keys=True)\n"
            "    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b'=').decode()",
            "for an RSA key: hash only the required members (e, kty, n)",
        ),
        (1, "def kid_of(public_jwk):\n    return public_jwk['kid']", "a kid member can say anything"),
    ],
    "08b_key_rotation_and_pitfalls": [
        (
            1,
            "def verify_with_jwks(token, jwks):\n    try:\n"
            "        return jwt.decode(token, jwks, algorithms=['ES256', 'RS256'], audience=AUDIENCE, issuer=ISSUER)\n"
            "    except JOSEError as error:\n        raise TokenError(str(error)) from None",
            "python-jose, given the whole set, tried the RSA key too",
        ),
        (
            1,
            "def verify_with_jwks(token, jwks):\n    header = get_unverified_header(token)\n"
            "    [key] = [key for key in jwks['keys'] if key['kid'] == header.get('kid')]\n"
            "    try:\n        return jwt.decode(token, key, algorithms=[key['alg']], audience=AUDIENCE, issuer=ISSUER)\n"
            "    except JOSEError as error:\n        raise TokenError(str(error)) from None",
            "not TokenError",
        ),
    ],
    "09_tokens_in_the_browser": [
        (
            1,
            "from urllib.parse import urlsplit\n\n\ndef origin_of(url):\n    parts = urlsplit(url)\n"
            "    return f'{parts.scheme}://{parts.netloc}'",
            "in lower case",
        ),
        (
            1,
            "from urllib.parse import urlsplit\n\n\ndef origin_of(url):\n    parts = urlsplit(url)\n"
            "    return f'{parts.scheme}://{parts.hostname}:{parts.port}'",
            "the port is None when the URL names none",
        ),
        (
            1,
            "from urllib.parse import urlsplit\n\n\ndef origin_of(url):\n    parts = urlsplit(url)\n"
            "    port = f':{parts.port}' if parts.port else ''\n    return f'{parts.scheme}://{parts.hostname}{port}'",
            "the default port (443 for https, 80 for http) is left out",
        ),
        (1, "from urllib.parse import urljoin\n\n\ndef origin_of(url):\n    return urljoin(url, '/')", "not even '/'"),
        (
            2,
            "def forged_sign_out(target, cookie):\n"
            "    headers = {'Origin': attacker_url, 'Cookie': f'{REFRESH_COOKIE}={cookie}'}\n"
            "    return httpx.post(f'{target}/app/session/logout', headers=headers)",
            "the browser says so in Sec-Fetch-Site",
        ),
        (
            2,
            "def forged_sign_out(target, cookie):\n"
            "    headers = {'Sec-Fetch-Site': 'same-site', 'Cookie': f'{REFRESH_COOKIE}={cookie}'}\n"
            "    return httpx.post(f'{target}/app/session/logout', headers=headers)",
            "a browser sends Origin with every POST",
        ),
        (
            2,
            "def forged_sign_out(target, cookie):\n"
            "    headers = {'Origin': base_url, 'Sec-Fetch-Site': 'same-site', 'Cookie': f'{REFRESH_COOKIE}={cookie}'}\n"
            "    return httpx.post(f'{target}/app/session/logout', headers=headers)",
            "Origin should be the attacker page's origin",
        ),
        (
            2,
            "def forged_sign_out(target, cookie):\n    headers = {'Origin': attacker_url, 'Sec-Fetch-Site': 'same-site'}\n"
            "    return httpx.post(f'{target}/app/session/logout', headers=headers)",
            "SameSite=Strict lets the cookie go",
        ),
        (
            2,
            "def forged_sign_out(target, cookie):\n"
            "    headers = {'Origin': attacker_url, 'Sec-Fetch-Site': 'same-site', 'Cookie': f'{REFRESH_COOKIE}={cookie}'}\n"
            "    return httpx.post(f'{base_url}/app/session/logout', headers=headers)",
            "use target, not base_url",
        ),
    ],
}


def cell_source(nb, text: str) -> str:
    """The source of the one cell that starts with text, for an entry that repeats a cell of the notebook."""
    [source] = [cell.source for cell in nb.cells if cell.cell_type == "code" and cell.source.startswith(text)]
    return source


@pytest.mark.parametrize("notebook", PACE_NOTEBOOKS, ids=[path.stem for path in PACE_NOTEBOOKS])
def test_every_listed_wrong_answer_is_refused_with_its_hint(notebook):
    nb = nbformat.read(notebook, as_version=4)
    cells, solutions = exercises(nb)
    checks = [
        next(i for i in range(cell + 1, len(nb.cells)) if CHECK_CALL.search(nb.cells[i].source)) for cell in cells
    ]
    wanted = []  # (cell, the hint's piece), in the order the checks run
    for number in range(len(cells), 0, -1):  # from the last exercise, so that earlier indexes stay right
        check_source = nb.cells[checks[number - 1]].source
        added = []
        for exercise_number, source, hint in WRONG_ANSWERS[notebook.stem]:
            if exercise_number != number:
                continue
            source = cell_source(nb, source[5:]) if source.startswith("cell:") else source
            added.append(nbformat.v4.new_code_cell(source))
            if hint is not None:
                added.append(nbformat.v4.new_code_cell(check_source))
                wanted.insert(len([w for w in wanted if w[2] < number]), (added[-1], hint, number))
        added += [nbformat.v4.new_code_cell(solutions[number - 1]), nbformat.v4.new_code_cell(check_source)]
        nb.cells[checks[number - 1] + 1 : checks[number - 1] + 1] = added
        wanted.append((added[-1], "✅ Solved! Well done.", number))
    execute(nb, notebook.parent)
    outputs = {id(cell): "".join(output.get("text", "") for output in cell.outputs) for cell, _, _ in wanted}
    missed = [
        f"exercise {number}: wanted {hint!r}, got {outputs[id(cell)]!r}"
        for cell, hint, number in wanted
        if hint not in outputs[id(cell)]
    ]
    assert not missed, "\n".join(missed)


def calls(source: str) -> set[str]:
    """The calls written in source (up to one level of nested parentheses), quotes and spaces made uniform."""
    found = re.findall(r"[\w.]+\((?:[^()]|\([^()]*\))*\)", source.replace("'", '"'))
    return {re.sub(r"\s+", "", call) for call in found if len(call) >= 12}


@pytest.mark.parametrize("notebook", PACE_NOTEBOOKS, ids=[path.stem for path in PACE_NOTEBOOKS])
def test_check_cells_show_a_call_and_first_hints_do_not_give_the_answer(notebook):
    nb = nbformat.read(notebook, as_version=4)
    cells, solutions = exercises(nb)
    check_cells = [cell for cell in nb.cells if cell.cell_type == "code" and CHECK_CALL.search(cell.source)]
    assert [cell.source for cell in check_cells if not re.fullmatch(r"check\(exercises\.\w+\)", cell.source)] == []
    for solution, output in zip(solutions, check_outputs(nb), strict=True):
        hint = re.sub(r"\s+", "", output.replace("'", '"'))
        assert [call for call in calls(solution) if call in hint] == [], output
