"""Keep the notebooks runnable, clean, and the same as lesson_code/.

    python tools/notebook_tools.py run [NOTEBOOK ...]   re-run notebooks and save them with clean metadata
    python tools/notebook_tools.py mirror [NOTEBOOK ...] copy lesson_code/ definitions into the marked cells, re-run
    python tools/notebook_tools.py strip DIR [--force]  write live copies into DIR (notebooks-live), for live coding
    python tools/notebook_tools.py plan [NOTEBOOK ...]   show what the live copy does with each code cell, and why

A marked cell starts with a line such as `# lesson_code/tokens.py`: what it defines must read exactly as the
definition of the same name in that file.

A live copy has no output and no solution; the short cells that teach a step are blank but for a comment saying
what to type (see live_plan for the rules, and instruction for the comment). A copy the learner edited is kept:
strip replaces it only with --force.
"""

import ast
import difflib
import hashlib
import json
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
MARK = re.compile(r"# (lesson_code/\w+\.py)\s*$")
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
CELL_METADATA = ("tags", "live")  # what clean() keeps of a cell's metadata: "live" is the live copy's rule
FIX = "make mirror"


def notebook_paths(root: Path = ROOT) -> list[Path]:
    return sorted((root / "notebooks").glob("[0-9][0-9]*_*.ipynb"))


@dataclass
class MarkedCell:
    notebook: Path
    index: int
    target: str
    source: str


def marked_cells(notebook: Path) -> list[MarkedCell]:
    cells = nbformat.read(notebook, as_version=4).cells
    found = []
    for index, cell in enumerate(cells):
        match = MARK.match(cell.source.split("\n", 1)[0]) if cell.cell_type == "code" else None
        if match:
            found.append(MarkedCell(notebook, index, match[1], cell.source))
    return found


def definitions(source: str) -> dict[str, str]:
    """Top-level functions, classes and assigned names, each with its source text.

    The text runs from the comment lines right above a definition (not a cell's marker) through its decorators to
    its last line, so a comment that changes in one place and not the other is drift too.
    """
    lines = source.splitlines()
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names = [node.name]
            start = min([node.lineno] + [decorator.lineno for decorator in node.decorator_list])
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [target.id for target in targets if isinstance(target, ast.Name)]
            start = node.lineno
        else:
            continue
        while start > 1 and lines[start - 2].lstrip().startswith("#") and not MARK.match(lines[start - 2]):
            start -= 1
        text = "\n".join(line.rstrip() for line in lines[start - 1 : node.end_lineno])
        found.update({name: text for name in names})
    return found


def public_functions(source: str) -> list[str]:
    return [
        node.name
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_")
    ]


def cell_label(cell: MarkedCell) -> str:
    return f"notebooks/{cell.notebook.name} (cell {cell.index + 1})"


def drift(root: Path = ROOT) -> list[str]:
    """Every way the marked cells and lesson_code/ differ, each as a readable report."""
    problems = []
    covered: dict[str, set[str]] = {}
    for notebook in notebook_paths(root):
        for cell in marked_cells(notebook):
            target = root / cell.target
            if not target.exists():
                problems.append(f"{cell_label(cell)} is marked {cell.target}, which does not exist.")
                continue
            in_file = definitions(target.read_text(encoding="utf-8"))
            in_cell = definitions(cell.source)
            if not in_cell:
                problems.append(f"{cell_label(cell)} is marked {cell.target} but defines nothing.")
            for name, text in in_cell.items():
                covered.setdefault(cell.target, set()).add(name)
                if name not in in_file:
                    problems.append(f"{cell_label(cell)} defines {name}, which {cell.target} does not have.")
                elif text != in_file[name]:
                    diff = difflib.unified_diff(
                        in_cell[name].splitlines(),
                        in_file[name].splitlines(),
                        fromfile=cell_label(cell),
                        tofile=cell.target,
                        lineterm="",
                    )
                    problems.append(f"{name} differs:\n" + "\n".join(diff))
    for target, names in covered.items():
        for name in public_functions((root / target).read_text(encoding="utf-8")):
            if name not in names:
                problems.append(f"{target} defines {name}, which no cell marked '# {target}' shows.")
    return problems


def explain(problems: list[str]) -> str:
    return (
        "\n\n".join(problems)
        + "\n\nlesson_code/ holds the finished code. If it is right, run:\n\n    "
        + FIX
        + "\n\nwhich copies its definitions into the marked notebook cells and re-runs those notebooks. If the"
        " notebook is right, make the same edit in lesson_code/ (the + lines above are the file's)."
    )


def mirror(notebooks: list[Path] | None = None) -> list[Path]:
    """Rewrite each differing definition in the marked cells with the file's; return the notebooks changed."""
    changed = []
    for notebook in notebooks or notebook_paths():
        nb = nbformat.read(notebook, as_version=4)
        touched = False
        for cell in marked_cells(notebook):
            in_file = definitions((ROOT / cell.target).read_text(encoding="utf-8"))
            source = cell.source
            for name, text in definitions(source).items():
                if name in in_file and text != in_file[name]:
                    source = source.replace(text, in_file[name])
            if source != cell.source:
                nb.cells[cell.index].source = source
                touched = True
        if touched:
            nbformat.write(nb, notebook)
            changed.append(notebook)
    return changed


def clean(nb: nbformat.NotebookNode) -> None:
    """Only what the lesson needs: no timings, widget state, Python version or random cell ids."""
    nb.metadata = nbformat.from_dict({"kernelspec": KERNELSPEC, "language_info": {"name": "python"}})
    for number, cell in enumerate(nb.cells, start=1):
        cell.id = f"cell-{number:02d}"
        cell.metadata = nbformat.from_dict({key: cell.metadata[key] for key in CELL_METADATA if key in cell.metadata})


def execute(nb: nbformat.NotebookNode, folder: Path = NOTEBOOKS) -> nbformat.NotebookNode:
    """Run every cell in a fresh kernel started in folder; the outputs land in nb."""
    from nbclient import NotebookClient

    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}})
    # As nbval does: the kernel's own start-up log (ipykernel warns about TCP) must not land in a cell's output.
    return client.execute(stderr=subprocess.DEVNULL)


def run(notebook: Path) -> None:
    nb = execute(nbformat.read(notebook, as_version=4), notebook.parent)
    clean(nb)
    nbformat.write(nb, notebook)


# Live copies, for live coding (make live-copies). Each code cell of a reference notebook becomes one of:
#   exercise  an exercise cell ('# Write your code here'): left as it is, the learner's to fill in;
#   solution  a hidden solution cell (tagged 'solution', or its source hidden): removed;
#   keep      left filled, because nobody should type it (the reason says why: see live_plan);
#   blank     a step the instructor live-codes and the room types along: emptied but for '# Type: ...'.
# Markdown loses its <details> blocks (every one holds a solution or an answer); outputs go.
LIVE_METADATA = CELL_METADATA[1]  # a cell's own rule: "keep", or the instruction its blank copy shows ('Type: ...')
TYPE_LINE = re.compile(r"#\s*Type:\s*(?P<text>\S.*?)\s*$")
SOLUTION_TAG = "solution"
EXERCISE = "# Write your code here"
CHECK_CALL = re.compile(r"^(checks\.)?check\(", re.MULTILINE)  # as tests/test_notebooks.py finds check cells
DETAILS = re.compile(r"\n*<details>.*?</details>\n*", re.DOTALL)
LONG_CELL_LINES = 10  # a cell of more lines than this (blank lines aside) stays filled
SET_UP = re.compile(r"\bsys\.path\b|\bwarnings\.|\btempfile\.|\bos\.environ\b|\.cache_clear\(\)")
COMMENT_WIDTH = 100
WHAT_MAX = 160  # characters of prose in an instruction
ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "cf.")  # a full stop that ends no sentence
CALLS_SHOWN = 3
CALL_MAX = 60  # a longer call is shown as name(…)
FIRST_ARGUMENT_MAX = 20  # ... or as name(first argument, …) when that argument is short
# Calls that say nothing about the step: builtins, and methods every str, bytes, dict or response has.
PLAIN_CALLS = frozenset(
    "print len repr str int float bool list dict set tuple sorted round type isinstance range enumerate zip any all "
    "sum min max next iter getattr hasattr callable id abs divmod hex".split()
)
PLAIN_METHODS = frozenset(
    "encode decode split rsplit partition rpartition strip rstrip lstrip replace join format startswith endswith "
    "lower upper items keys values copy update append extend pop setdefault json count index fromkeys".split()
)
LIVE_COPY_METADATA = "live_copy"  # in a live copy's notebook metadata: where it came from, and what was written


@dataclass(frozen=True)
class LiveCell:
    index: int
    action: str  # exercise, solution, keep or blank
    reason: str
    instruction: str = ""  # for blank cells: the text after '# Type: '


def parse_cell(source: str) -> ast.Module | None:
    try:
        return compile(source, "<cell>", "exec", flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    except SyntaxError:
        return None


def code_lines(source: str) -> int:
    return sum(1 for line in source.splitlines() if line.strip())


def helper_names(nb: nbformat.NotebookNode) -> set[str]:
    """The names a notebook imports from notebooks/helpers (helpers.checks' check included)."""
    names = set()
    for cell in nb.cells:
        tree = parse_cell(cell.source) if cell.cell_type == "code" else None
        for node in ast.walk(tree) if tree else ():
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "helpers":
                names.update(alias.asname or alias.name for alias in node.names)
            elif isinstance(node, ast.Import):
                names.update(alias.asname or alias.name for alias in node.names if alias.name.startswith("helpers"))
    return names


def uses_helpers(tree: ast.Module, helpers: set[str]) -> bool:
    """Imports from notebooks/helpers, or uses what the notebook imported from there (check() aside: rule 6)."""
    imports = any(
        isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "helpers" for node in ast.walk(tree)
    )
    return imports or bool(names_in(tree) & (helpers - {"check"}))


def names_in(node: ast.AST) -> set[str]:
    return {child.id for child in ast.walk(node) if isinstance(child, ast.Name)}


def bound_names(statement: ast.stmt) -> set[str]:
    if isinstance(statement, ast.Assign | ast.AnnAssign | ast.AugAssign):
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        return {name for target in targets for name in names_in(target)}
    if isinstance(statement, ast.Import | ast.ImportFrom):
        return {(alias.asname or alias.name).split(".")[0] for alias in statement.names}
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {statement.name}
    return set()


def is_set_up(tree: ast.Module, source: str) -> bool:
    """Only imports and set-up: sys.path, warnings, tempfile, os.environ, cache_clear(), and names made from them,
    with at most a last bare expression that shows the result. Imports alone are not set-up: they are typed."""
    body = tree.body[:-1] if tree.body and isinstance(tree.body[-1], ast.Expr) else tree.body
    set_up: set[str] = set()
    found = False
    for statement in body:
        text = ast.get_source_segment(source, statement) or ""
        if isinstance(statement, ast.Import | ast.ImportFrom):
            continue
        if SET_UP.search(text) or names_in(statement) & set_up:
            set_up |= bound_names(statement)
            found = True
        else:
            return False
    return found


def is_imports(tree: ast.Module) -> bool:
    """Only imports, and at most a last expression that calls nothing (store.SCOPES, ISSUER, AUDIENCE)."""
    *imports, last = tree.body or [None]
    if isinstance(last, ast.Expr) and not any(isinstance(node, ast.Call) for node in ast.walk(last)):
        last = None
    imports += [last] if last else []
    return bool(imports) and all(isinstance(statement, ast.Import | ast.ImportFrom) for statement in imports)


def exit_stacks(nb: nbformat.NotebookNode) -> set[str]:
    """Names a notebook binds to contextlib.ExitStack(): the servers it stops at the end."""
    found = set()
    for cell in nb.cells:
        tree = parse_cell(cell.source) if cell.cell_type == "code" else None
        for node in tree.body if tree else ():
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                if ast.unparse(node.value.func) in ("contextlib.ExitStack", "ExitStack"):
                    found |= {target.id for target in node.targets if isinstance(target, ast.Name)}
    return found


def is_tear_down(tree: ast.Module, stacks: set[str]) -> bool:
    """A cell that starts by closing the notebook's ExitStack: stopping the servers, and what goes with them."""
    first = tree.body[0] if tree.body else None
    return (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Call)
        and isinstance(first.value.func, ast.Attribute)
        and first.value.func.attr == "close"
        and ast.unparse(first.value.func.value) in stacks
    )


def is_display_call(tree: ast.Module, shown_by: set[str]) -> bool:
    """Only calls, with literal arguments, of functions defined in cells that stay filled (the_line("...")):
    they show a line of lesson_code/, and teach nothing to type."""
    return bool(tree.body) and all(
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Call)
        and isinstance(statement.value.func, ast.Name)
        and statement.value.func.id in shown_by
        and all(isinstance(argument, ast.Constant) for argument in statement.value.args)
        and all(isinstance(keyword.value, ast.Constant) for keyword in statement.value.keywords)
        for statement in tree.body
    )


def live_plan(nb: nbformat.NotebookNode) -> list[LiveCell]:
    """What the live copy does with each code cell, and why: the first rule that applies wins.

    1. exercise   '# Write your code here' in it: the learner's own cell, left as it is.
    2. solution   tagged 'solution', or its source hidden (metadata jupyter.source_hidden): removed.
    3. metadata   cell metadata 'live': "keep" keeps it; any other text blanks it, with that text as instruction.
    4. # Type:    a first line '# Type: ...' blanks the cell, whatever its length, with that instruction.
    5. mirror     first line '# lesson_code/....py': the finished code, kept (it is compared with the file).
    6. check      calls check(): the exercise checks of notebooks/helpers/checks.py, kept.
    7. helpers    uses a name imported from notebooks/helpers (a server, a picture), kept.
    8. imports    only imports, and at most a last expression that calls nothing, kept.
    9. set-up     only imports and set-up (sys.path, warnings, tempfile, os.environ, cache_clear()), kept.
    10. tear-down starts by closing the notebook's ExitStack (servers.close()), kept.
    11. display   only calls, with literal arguments, of functions defined in kept cells (the_line("...")), kept.
    12. long      more than LONG_CELL_LINES lines (blank lines aside), kept: nobody types it.
    13. step      anything else: blanked, with an instruction made by instruction().
    """
    helpers = helper_names(nb)
    stacks = exit_stacks(nb)
    kept_functions: set[str] = set()
    plan = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        source = cell.source
        first = source.split("\n", 1)[0]
        tree = parse_cell(source)
        explicit = cell.metadata.get(LIVE_METADATA)
        typed = TYPE_LINE.fullmatch(first)
        lines = code_lines(source)
        if EXERCISE in source:
            entry = LiveCell(index, "exercise", "exercise: the learner's own cell")
        elif SOLUTION_TAG in cell.metadata.get("tags", []) or cell.metadata.get("jupyter", {}).get("source_hidden"):
            entry = LiveCell(index, "solution", "solution: removed")
        elif explicit == "keep":
            entry = LiveCell(index, "keep", "metadata: live is 'keep'")
        elif isinstance(explicit, str) and explicit.strip():
            text = TYPE_LINE.fullmatch("# " + explicit.strip())
            entry = LiveCell(index, "blank", "metadata: live", text["text"] if text else explicit.strip())
        elif typed:
            entry = LiveCell(index, "blank", "first line # Type:", typed["text"])
        elif MARK.match(first):
            entry = LiveCell(index, "keep", f"mirror: {MARK.match(first)[1]}")
        elif CHECK_CALL.search(source):
            entry = LiveCell(index, "keep", "check: calls check()")
        elif tree and uses_helpers(tree, helpers):
            entry = LiveCell(index, "keep", "helpers: uses notebooks/helpers")
        elif tree and is_imports(tree):
            entry = LiveCell(index, "keep", "imports")
        elif tree and is_set_up(tree, source):
            entry = LiveCell(index, "keep", "set-up")
        elif tree and is_tear_down(tree, stacks):
            entry = LiveCell(index, "keep", "tear-down: stops the servers")
        elif tree and is_display_call(tree, kept_functions):
            entry = LiveCell(index, "keep", "display: shows lines of lesson_code/")
        elif lines > LONG_CELL_LINES:
            entry = LiveCell(index, "keep", f"long: {lines} lines")
        else:
            entry = LiveCell(index, "blank", f"step: {lines} lines", instruction(nb, index))
        if entry.action == "keep" and tree:
            kept_functions |= {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        plan.append(entry)
    return plan


def plain_markdown(text: str) -> str:
    """Markdown as a comment reads it: no links, pictures, emphasis or HTML; code spans keep their backticks."""
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"\*\*(.+?)\*\*", r"\1", text)
    text = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"\1", text)
    return " ".join(text.split())


def introducing_sentence(markdown: str) -> str:
    """What the prose just above a cell says it does: from the last paragraph (not a heading or a picture), the
    last sentence when it ends with a colon, else the first; at most WHAT_MAX characters."""
    paragraphs = [plain_markdown(part) for part in re.split(r"\n\s*\n", DETAILS.sub("\n\n", markdown))]
    paragraphs = [part.lstrip("#-0123456789. ").strip() for part in paragraphs]
    prose = [part for part in paragraphs if part]
    if not prose:
        return ""
    sentences = []
    for piece in re.split(r"(?<=[.!?])\s+", prose[-1]):
        if sentences and sentences[-1].endswith(ABBREVIATIONS):
            sentences[-1] += " " + piece
        else:
            sentences.append(piece)
    # A paragraph that ends with a colon introduces the cell: its last sentence says what the cell does. Otherwise
    # the paragraph's first sentence says what it is about.
    sentence = (sentences[-1] if sentences[-1].endswith(":") else sentences[0]).rstrip(":.;, ")
    if len(sentence) > WHAT_MAX:
        sentence = sentence[:WHAT_MAX].rsplit(" ", 1)[0] + " …"
    return sentence


def written(node: ast.AST, source: str) -> str:
    """node as the cell writes it (0o600 stays 0o600, quotes stay), on one line."""
    return " ".join((ast.get_source_segment(source, node) or ast.unparse(node)).split())


def shown(node: ast.AST, source: str, limit: int = CALL_MAX) -> str:
    """node as written when short; else a call as name(first argument, …), or name(…), or name() without
    arguments; anything else cut short with …."""
    text = written(node, source)
    if len(text) <= limit:
        return text
    if not isinstance(node, ast.Call):
        return text[: limit - 1] + "…"
    function = node.func
    name = written(function, source)
    if len(name) > limit // 2 and isinstance(function, ast.Attribute):
        name = f"{shown(function.value, source, limit // 2)}.{function.attr}"
    if not node.args and not node.keywords:
        return f"{name}()"
    first = written(node.args[0], source) if node.args else ""
    if first and len(first) <= FIRST_ARGUMENT_MAX:
        return f"{name}({first}, …)" if len(node.args) + len(node.keywords) > 1 else f"{name}({first})"
    return f"{name}(…)"


def telling_calls(tree: ast.Module, source: str, imported: set[str]) -> list[str]:
    """The calls that make the step, outermost first, in the order written. Left out: builtins; methods every str,
    bytes or dict has (but a module's function of that name, jwt.decode, is kept); a method without arguments
    called on a call's result (.digest()). A call shown in full hides the calls inside it."""
    calls = sorted(
        (node for node in ast.walk(tree) if isinstance(node, ast.Call)),
        key=lambda node: (node.lineno, node.col_offset),
    )
    found: dict[str, str] = {}
    for call in calls:
        function = written(call.func, source)
        if isinstance(call.func, ast.Attribute):
            value = call.func.value
            if isinstance(value, ast.Name) and value.id in imported:
                plain = False  # a module's function
            else:  # a method: plain if every str or dict has it, or if it only finishes a call (.digest())
                plain = call.func.attr in PLAIN_METHODS or (isinstance(value, ast.Call) and not call.args)
        else:
            plain = function in PLAIN_CALLS
        if plain or function in found or any(written(call, source) in text for text in found.values()):
            continue
        found[function] = shown(call, source)
    return list(found.values())


def imported_names(nb: nbformat.NotebookNode) -> set[str]:
    names = set()
    for cell in nb.cells:
        tree = parse_cell(cell.source) if cell.cell_type == "code" else None
        for node in tree.body if tree else ():
            if isinstance(node, ast.Import | ast.ImportFrom):
                names |= bound_names(node)
    return names


def made_names(tree: ast.Module) -> list[str]:
    made = []
    for statement in tree.body:
        if isinstance(statement, ast.Import | ast.ImportFrom):
            continue
        for name in sorted(bound_names(statement), key=ast.unparse(statement).find):
            if name not in made and not name.startswith("_"):
                made.append(name)
    return made


def imports_of(tree: ast.Module, source: str) -> list[str]:
    return [written(node, source) for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]


def instruction(nb: nbformat.NotebookNode, index: int) -> str:
    """What to type, from the prose above the cell and the cell itself, made the same way every time:

    '<what>: <imports>, then <calls> (making <names>)', where <what> is introducing_sentence() of the nearest
    markdown cell above; <imports> the cell's import statements; <calls> the calls that make the step (at most
    CALLS_SHOWN, builtins and str/dict methods left out, each as written when short, else name(…), whose arguments'
    calls are then shown too); <names> what the cell defines or assigns. A cell without such calls shows its last
    expression instead, if it makes no name.
    """
    above = next((cell.source for cell in reversed(nb.cells[:index]) if cell.cell_type == "markdown"), "")
    what = introducing_sentence(above) or "the next step"
    source = nb.cells[index].source
    tree = parse_cell(source)
    if tree is None or not tree.body:
        return what
    calls = telling_calls(tree, source, imported_names(nb))
    made = made_names(tree)
    how = ", ".join(calls[:CALLS_SHOWN]) + (", …" if len(calls) > CALLS_SHOWN else "")
    if not how and not made and isinstance(tree.body[-1], ast.Expr):
        how = shown(tree.body[-1].value, source)
    imports = "; ".join(imports_of(tree, source))
    if imports:
        how = f"{imports}, then {how}" if how else imports
    text = f"{what}: {how}" if how else what
    return f"{text} (making {', '.join(made)})" if made else text


def type_comment(text: str) -> str:
    lines = textwrap.wrap(
        f"Type: {text}", COMMENT_WIDTH - 2, subsequent_indent="  ", break_on_hyphens=False, break_long_words=False
    )
    return "\n".join(f"# {line}" for line in lines)


def sources_digest(nb: nbformat.NotebookNode) -> str:
    """What a learner changes when they type: the kind and text of every cell, in order (not outputs or metadata)."""
    cells = [[cell.cell_type, cell.source] for cell in nb.cells]
    return hashlib.sha256(json.dumps(cells, ensure_ascii=False).encode()).hexdigest()


def live_copy(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The live copy of a reference notebook (not changed): blank steps, no solutions, no outputs.

    Every cell keeps the id clean() gives it in the reference (cell-NN, its place there), so a copy's cell can be
    matched with the reference's even after solution cells are removed.
    """
    nb = nbformat.from_dict(nb)
    plan = {entry.index: entry for entry in live_plan(nb)}  # before clean(), which drops jupyter.source_hidden
    clean(nb)
    cells = []
    for index, cell in enumerate(nb.cells):
        entry = plan.get(index)
        if cell.cell_type == "markdown":
            cell.source = re.sub(r"\n{3,}", "\n\n", DETAILS.sub("\n\n", cell.source)).strip("\n")
            if not cell.source:
                continue
        elif cell.cell_type == "code":
            if entry.action == "solution":
                continue
            if entry.action == "blank":
                cell.source = type_comment(entry.instruction) + "\n"
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop(LIVE_METADATA, None)
        cells.append(cell)
    nb.cells = cells
    nb.metadata[LIVE_COPY_METADATA] = {"from": f"notebooks/{name}", "sources_sha256": sources_digest(nb)}
    return nb


def edited(copy: Path) -> bool:
    """Whether a learner changed a live copy since it was written: its cells are not what the tool wrote.

    A copy without the tool's record (written by hand, or by an older version of the tool) counts as edited.
    Running cells and saving is not editing: outputs and metadata are left out of the comparison.
    """
    try:
        nb = nbformat.read(copy, as_version=4)
        recorded = nb.metadata[LIVE_COPY_METADATA]["sources_sha256"]
    except Exception:
        return True
    return recorded != sources_digest(nb)


def strip(folder: Path, force: bool = False, source: Path = NOTEBOOKS) -> list[str]:
    """Write live copies of the notebooks in source/ into folder, with the helpers and images they use.

    A copy the learner edited is kept, unless force; an untouched one is refreshed. Returns one line per notebook.
    """
    folder.mkdir(parents=True, exist_ok=True)
    report = []
    for notebook in sorted(source.glob("[0-9][0-9]*_*.ipynb")):
        target = folder / notebook.name
        copy = live_copy(nbformat.read(notebook, as_version=4), notebook.name)
        if target.exists() and edited(target) and not force:
            report.append(f"kept {target.name}: it was edited since it was written (--force replaces it)")
            continue
        if target.exists():
            verb = "replaced" if edited(target) else "refreshed"
        else:
            verb = "wrote"
        nbformat.write(copy, target)
        report.append(f"{verb} {target.name}")
    (folder / "helpers").mkdir(exist_ok=True)
    for helper in sorted((source / "helpers").glob("*.py")):
        (folder / "helpers" / helper.name).write_bytes(helper.read_bytes())
    for picture in sorted(source.glob("images/*")):
        (folder / "images").mkdir(exist_ok=True)
        (folder / "images" / picture.name).write_bytes(picture.read_bytes())
    return report


def show_plan(notebook: Path) -> list[str]:
    nb = nbformat.read(notebook, as_version=4)
    lines = []
    for entry in live_plan(nb):
        lines.append(f"{notebook.name} cell {entry.index + 1}: {entry.action} ({entry.reason})")
        if entry.action == "blank":
            lines.extend("    " + line for line in type_comment(entry.instruction).splitlines())
    return lines


def main(argv: list[str]) -> int:
    command, *rest = argv or ["--help"]
    folders = [word for word in rest if word != "--force"]
    if command == "run":
        for notebook in [Path(name).resolve() for name in rest] or notebook_paths():
            print(f"running {notebook.relative_to(ROOT)}")
            run(notebook)
    elif command == "mirror":
        for notebook in mirror([Path(name).resolve() for name in rest]):
            print(f"mirrored lesson_code/ into {notebook.relative_to(ROOT)}; re-running it")
            run(notebook)
        problems = drift()
        print(explain(problems) if problems else "notebooks and lesson_code/ agree")
        return 1 if problems else 0
    elif command == "strip" and len(folders) == 1 and len(rest) <= 2:
        [folder] = folders
        print("\n".join(strip(Path(folder), force="--force" in rest)))
        print(f"live copies in {folder}/: the plan of each cell is 'python tools/notebook_tools.py plan'")
    elif command == "plan":
        for notebook in [Path(name).resolve() for name in rest] or notebook_paths():
            print("\n".join(show_plan(notebook)))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
