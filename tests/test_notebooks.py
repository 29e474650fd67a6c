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
        "06_sessions_refresh_logout.ipynb",
        "07_scopes_and_roles.ipynb",
        "08_asymmetric_keys_jwks.ipynb",
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
        "--- notebooks/02_create_access_token.ipynb (cell 24)\n"
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
    assert len(cells) >= 2
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
