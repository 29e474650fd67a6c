"""Live copies for live coding (make live-copies: tools/notebook_tools.py strip notebooks-live).

The short cells that teach a step are blank but for a '# Type: ...' comment; marked, set-up, helper, check and long
cells stay filled; solutions and outputs are gone; a copy the learner edited is never replaced without --force; and
the copies, filled in again from the reference notebooks, run from top to bottom.
"""

import os
import re
import shutil

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from notebook_tools import (
    LONG_CELL_LINES,
    MARK,
    ROOT,
    clean,
    code_lines,
    execute,
    introducing_sentence,
    live_copy,
    live_plan,
    main,
    notebook_paths,
    show_plan,
    strip,
)

NOTEBOOKS = notebook_paths()
IDS = [path.stem for path in NOTEBOOKS]
SOLUTION = re.compile(r"<details><summary>Solution</summary>\s*```python\n(.*?)```\s*</details>", re.DOTALL)
CHECK_CALL = re.compile(r"^(checks\.)?check\(", re.MULTILINE)
EXERCISE = "# Write your code here"
# A blank cell holds the comment and nothing else: '# Type: ...', continued on lines that start '#   '.
BLANK = re.compile(r"# Type: \S[^\n]*(\n#   \S[^\n]*)*\n")
# The notebooks executed filled in: 01-05, the one-day workshop that learners type along (about 14 s). 06-08 add
# about 37 s (08 waits for real for its key rotation), and their filled-in copies are shown to hold exactly the
# reference's code, which nbval runs; LIVE_COPIES_EXECUTE=all runs them too.
WORKSHOP = [path.stem for path in NOTEBOOKS if path.name[:2] in ("01", "02", "03", "04", "05")]
EXECUTED = [path.stem for path in NOTEBOOKS] if os.environ.get("LIVE_COPIES_EXECUTE") == "all" else WORKSHOP


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A folder with a copy of lesson_code/ and the live copies next to it, as at the repository's root."""
    root = tmp_path_factory.mktemp("checkout")
    shutil.copytree(ROOT / "lesson_code", root / "lesson_code", ignore=shutil.ignore_patterns("__pycache__"))
    report = strip(root / "notebooks-live")
    return root, report


def reference(notebook):
    nb = nbformat.read(notebook, as_version=4)
    clean(nb)  # the ids the live copy keeps: cell-NN, the cell's place in the reference
    return nb


def copy_of(checkout, notebook):
    return nbformat.read(checkout[0] / "notebooks-live" / notebook.name, as_version=4)


def by_id(nb) -> dict:
    return {cell.id: cell for cell in nb.cells}


def test_every_notebook_is_written_with_its_helpers_and_pictures(checkout):
    root, report = checkout
    assert report == [f"wrote {path.name}" for path in NOTEBOOKS]
    live = root / "notebooks-live"
    helpers = {path.name for path in (ROOT / "notebooks" / "helpers").glob("*.py")}
    assert {"__init__.py", "checks.py", "local_server.py", "pictures.py"} <= helpers
    assert {path.name for path in (live / "helpers").iterdir()} == helpers
    assert (live / "helpers" / "checks.py").read_text() == (ROOT / "notebooks" / "helpers" / "checks.py").read_text()
    assert {path.name for path in (live / "images").iterdir()} == {
        path.name for path in (ROOT / "notebooks" / "images").iterdir()
    }


# One cell of each kind the rules know, in a notebook of our own: the rules, and the comments, exactly.
RULES = new_notebook(
    cells=[
        new_markdown_cell("## Reading a token\n\nSome words first. python-jose reads the header without any key:"),
        new_code_cell("from jose import jwt\n\njwt.get_unverified_header(token)"),
        new_markdown_cell("The payload holds the **claims**. Fixed values here, so that every run is the same."),
        new_code_cell('payload = {"sub": "alice", "exp": 1900000000}\npayload'),
        new_code_cell('# lesson_code/tokens.py\nALGORITHM = "HS256"'),
        new_code_cell('import sys\n\nsys.path.insert(0, "..")\nsys.path[0]'),
        new_code_cell('from helpers.checks import check\n\ncheck(lambda: True, "hint")'),
        new_code_cell("\n".join(f"line_{n} = {n}" for n in range(LONG_CELL_LINES + 1))),
        new_code_cell("kept_by_metadata = 1", metadata={"live": "keep"}),
        new_code_cell('bob = make("bob")', metadata={"live": 'Type: a token for bob, with make("bob")'}),
        new_code_cell("# Type: sign it yourself\nsigned = sign(payload)"),
        new_code_cell("answer = 42", metadata={"tags": ["solution"]}),
        new_code_cell("answer = 41", metadata={"jupyter": {"source_hidden": True}}),
        new_code_cell(f"answer = None\n{EXERCISE}"),
        new_markdown_cell(
            "Before.\n\n<details><summary>Solution</summary>\n\n```python\nanswer = 42\n```\n\n</details>\n\n"
            "<details><summary>Why?</summary>\n\nBecause.\n\n</details>\n\nServers next, stopped at the end:"
        ),
        new_code_cell(
            "import contextlib\n\nservers = contextlib.ExitStack()\nbase_url = servers.enter_context(serve(app))"
        ),
        new_code_cell('servers.close()\nprint("stopped")'),
        new_code_cell("def the_line(start):\n" + "".join(f"    step_{n} = {n}\n" for n in range(LONG_CELL_LINES))),
        new_code_cell('the_line("def decode")\nthe_line("return")'),
        new_code_cell("from lesson_code import store\n\nstore.SCOPES"),
        new_markdown_cell("Alice logs in with a password that is far too long to show here in full:"),
        new_code_cell(
            'response = http.post("/token", data={"username": "alice", "password": "wonderland"})\n'
            'response.json()["token_type"]'
        ),
    ]
)


def test_each_rule_keeps_blanks_or_removes_the_cell_it_names():
    assert [(entry.index, entry.action, entry.reason) for entry in live_plan(RULES)] == [
        (1, "blank", "step: 2 lines"),
        (3, "blank", "step: 2 lines"),
        (4, "keep", "mirror: lesson_code/tokens.py"),
        (5, "keep", "set-up"),
        (6, "keep", "check: calls check()"),
        (7, "keep", "long: 11 lines"),
        (8, "keep", "metadata: live is 'keep'"),
        (9, "blank", "metadata: live"),
        (10, "blank", "first line # Type:"),
        (11, "solution", "solution: removed"),
        (12, "solution", "solution: removed"),
        (13, "exercise", "exercise: the learner's own cell"),
        (15, "blank", "step: 3 lines"),
        (16, "keep", "tear-down: stops the servers"),
        (17, "keep", "long: 11 lines"),
        (18, "keep", "display: shows lines of lesson_code/"),
        (19, "keep", "imports"),
        (21, "blank", "step: 2 lines"),
    ]


def test_the_live_copy_of_each_rule_exactly():
    copy = live_copy(RULES, "99_rules.ipynb")
    assert [(cell.id, cell.source) for cell in copy.cells] == [
        ("cell-01", RULES.cells[0].source),
        (
            "cell-02",
            "# Type: python-jose reads the header without any key: from jose import jwt, then\n"
            "#   jwt.get_unverified_header(token)\n",
        ),
        ("cell-03", RULES.cells[2].source),
        ("cell-04", "# Type: The payload holds the claims (making payload)\n"),
        *[(f"cell-{number:02d}", RULES.cells[number - 1].source) for number in (5, 6, 7, 8, 9)],
        ("cell-10", '# Type: a token for bob, with make("bob")\n'),
        ("cell-11", "# Type: sign it yourself\n"),
        ("cell-14", f"answer = None\n{EXERCISE}"),  # cells 12 and 13, the hidden solutions, are gone
        ("cell-15", "Before.\n\nServers next, stopped at the end:"),
        (
            "cell-16",
            "# Type: Servers next, stopped at the end: import contextlib, then contextlib.ExitStack(),\n"
            "#   servers.enter_context(serve(app)) (making servers, base_url)\n",
        ),
        *[(f"cell-{number:02d}", RULES.cells[number - 1].source) for number in (17, 18, 19, 20, 21)],
        (
            "cell-22",
            '# Type: Alice logs in with a password that is far too long to show here in full: http.post("/token",\n'
            "#   …) (making response)\n",
        ),
    ]
    assert all(cell.metadata == {} for cell in copy.cells)
    assert copy.metadata["live_copy"]["from"] == "notebooks/99_rules.ipynb"


def test_the_plan_says_what_happens_to_each_code_cell(tmp_path):
    notebook = tmp_path / "99_rules.ipynb"
    nbformat.write(RULES, notebook)
    lines = show_plan(notebook)
    assert lines[:4] == [
        "99_rules.ipynb cell 2: blank (step: 2 lines)",
        "    # Type: python-jose reads the header without any key: from jose import jwt, then",
        "    #   jwt.get_unverified_header(token)",
        "99_rules.ipynb cell 4: blank (step: 2 lines)",
    ]
    assert "99_rules.ipynb cell 12: solution (solution: removed)" in lines
    assert len([line for line in lines if not line.startswith("    ")]) == len(live_plan(RULES))


def test_clean_keeps_a_cells_live_rule_and_tags():
    nb = new_notebook(cells=[new_code_cell("x = 1", metadata={"live": "keep", "tags": ["t"], "collapsed": True})])
    clean(nb)
    assert nb.cells[0].metadata == {"live": "keep", "tags": ["t"]}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_short_steps_are_blank_and_everything_else_is_kept(checkout, notebook):
    original, copy = by_id(reference(notebook)), copy_of(checkout, notebook)
    blank = kept = 0
    for cell in copy.cells:
        if cell.cell_type != "code":
            continue
        source = original[cell.id].source
        if cell.source == source:
            kept += 1
            continue
        blank += 1
        assert BLANK.fullmatch(cell.source), cell.source
        assert code_lines(source) <= LONG_CELL_LINES or source.startswith("# Type:"), source
        assert not MARK.match(source.split("\n", 1)[0]) and not CHECK_CALL.search(source), source
        assert EXERCISE not in source and "helpers" not in source, source
    for cell in original.values():
        first = cell.source.split("\n", 1)[0]
        long = code_lines(cell.source) > LONG_CELL_LINES and not first.startswith("# Type:")
        if cell.cell_type == "code" and (MARK.match(first) or CHECK_CALL.search(cell.source) or long):
            assert by_id(copy)[cell.id].source == cell.source, f"{cell.id} should stay filled"
        if cell.cell_type == "code" and "sys.path.insert" in cell.source:
            assert by_id(copy)[cell.id].source == cell.source, f"{cell.id}, the set-up, should stay filled"
    assert blank >= 10 and kept >= 5, (blank, kept)


def test_the_header_cell_of_notebook_03_says_what_to_type(checkout):
    notebook = ROOT / "notebooks" / "03_inspect_and_verify.ipynb"
    [cell_id] = [
        cell.id
        for cell in reference(notebook).cells
        if cell.source == "from jose import jwt\n\njwt.get_unverified_header(token)"
    ]
    assert by_id(copy_of(checkout, notebook))[cell_id].source == (
        "# Type: python-jose reads the header and the claims without any key: from jose import jwt, then\n"
        "#   jwt.get_unverified_header(token)\n"
    )


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_comments_come_from_the_prose_above_and_the_cell(checkout, notebook):
    nb = reference(notebook)
    copy = by_id(copy_of(checkout, notebook))
    for entry in live_plan(nb):
        if not entry.reason.startswith("step:"):
            continue  # an instruction of the notebook's own, from metadata or a first line '# Type:'
        above = next(cell.source for cell in reversed(nb.cells[: entry.index]) if cell.cell_type == "markdown")
        comment = copy[nb.cells[entry.index].id].source
        text = " ".join(line[2:].strip() for line in comment.splitlines())
        assert text.startswith("Type: " + introducing_sentence(above)), comment
        assert all(len(line) <= 100 for line in comment.splitlines()), comment
        names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", nb.cells[entry.index].source))
        assert names & set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text[len(introducing_sentence(above)) + 6 :]))
    assert live_copy(nb, notebook.name) == live_copy(nb, notebook.name)  # the same every time


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_no_solution_and_no_output_is_left(checkout, notebook):
    solutions = [found for cell in reference(notebook).cells for found in SOLUTION.findall(cell.source)]
    assert len(solutions) >= 1
    copy = copy_of(checkout, notebook)
    everything = "\n".join(cell.source for cell in copy.cells)
    assert "<details" not in everything and "</details>" not in everything
    for solution in solutions:
        assert solution.strip() not in everything
    code = [cell for cell in copy.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert all("live" not in cell.metadata for cell in copy.cells)
    assert set(copy.metadata) == {"kernelspec", "language_info", "live_copy"}
    assert copy.metadata["live_copy"]["from"] == f"notebooks/{notebook.name}"


def test_an_edited_copy_is_kept_unless_forced(tmp_path, capsys):
    live = tmp_path / "notebooks-live"
    names = [path.name for path in NOTEBOOKS]
    strip(live)
    typed, ran, older = (live / name for name in names[1:4])
    nb = nbformat.read(typed, as_version=4)  # the learner typed into a blank cell
    step = next(cell for cell in nb.cells if cell.source.startswith("# Type:"))
    step.source += "token = 'what I typed'\n"
    nbformat.write(nb, typed)
    nb = nbformat.read(ran, as_version=4)  # the learner only ran cells: outputs are not edits
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.execution_count = 1
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran\n")]
    nbformat.write(nb, ran)
    nb = nbformat.read(older, as_version=4)  # a copy without the record: an older make live-copies wrote it
    del nb.metadata["live_copy"]
    nbformat.write(nb, older)
    (live / "my_notes.ipynb").write_text("mine")
    before = {path: path.read_bytes() for path in (typed, older)}

    kept = "it was edited since it was written (--force replaces it)"
    assert strip(live) == [
        f"refreshed {names[0]}",
        f"kept {names[1]}: {kept}",
        f"refreshed {names[2]}",
        f"kept {names[3]}: {kept}",
        *[f"refreshed {name}" for name in names[4:]],
    ]
    assert {path: path.read_bytes() for path in (typed, older)} == before
    assert all(cell.outputs == [] for cell in nbformat.read(ran, as_version=4).cells if cell.cell_type == "code")

    assert main(["strip", str(live), "--force"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"refreshed {names[0]}",
        f"replaced {names[1]}",
        f"refreshed {names[2]}",
        f"replaced {names[3]}",
        *[f"refreshed {name}" for name in names[4:]],
        f"live copies in {live}/: the plan of each cell is 'python tools/notebook_tools.py plan'",
    ]
    fresh = live_copy(nbformat.read(NOTEBOOKS[1], as_version=4), names[1])
    assert nbformat.read(typed, as_version=4).cells == fresh.cells
    assert (live / "my_notes.ipynb").read_text() == "mine"


def filled_in(notebook, copy):
    """The live copy with the reference's source put back into every blank cell."""
    original = by_id(reference(notebook))
    for cell in copy.cells:
        if cell.cell_type == "code" and BLANK.fullmatch(cell.source):
            cell.source = original[cell.id].source
    return copy


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_filled_in_the_copy_holds_the_reference_code(checkout, notebook):
    copy = filled_in(notebook, copy_of(checkout, notebook))
    nb = reference(notebook)
    hidden = {entry.index for entry in live_plan(nb) if entry.action == "solution"}
    assert [cell.source for cell in copy.cells if cell.cell_type == "code"] == [
        cell.source for index, cell in enumerate(nb.cells) if cell.cell_type == "code" and index not in hidden
    ]


@pytest.mark.parametrize("name", EXECUTED)
def test_filled_in_the_copy_runs_top_to_bottom(checkout, name):
    notebook = ROOT / "notebooks" / f"{name}.ipynb"
    live = checkout[0] / "notebooks-live"
    ran = execute(filled_in(notebook, copy_of(checkout, notebook)), live)
    code = [cell for cell in ran.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code)
    errors = [output for cell in code for output in cell.outputs if output.output_type == "error"]
    assert errors == []
    checks = [
        "".join(output.get("text", "") for output in cell.outputs)
        for cell in code
        if CHECK_CALL.search(cell.source) and EXERCISE not in cell.source
    ]
    assert len(checks) >= 1 and all(check.startswith("❌ Not yet. Hint: ") for check in checks), checks
