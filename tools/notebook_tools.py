"""Keep the notebooks runnable, clean, and the same as lesson_code/.

    python tools/notebook_tools.py run [NOTEBOOK ...]   re-run notebooks and save them with clean metadata
    python tools/notebook_tools.py mirror [NOTEBOOK ...] copy lesson_code/ definitions into the marked cells, re-run
    python tools/notebook_tools.py strip DIR            write output-free copies into DIR, for live coding

A marked cell starts with a line such as `# lesson_code/tokens.py`: what it defines must read exactly as the
definition of the same name in that file.
"""

import ast
import difflib
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
MARK = re.compile(r"# (lesson_code/\w+\.py)\s*$")
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
FIX = "make mirror"


def notebook_paths(root: Path = ROOT) -> list[Path]:
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


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
            in_file = definitions(target.read_text())
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
        for name in public_functions((root / target).read_text()):
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
            in_file = definitions((ROOT / cell.target).read_text())
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
        cell.metadata = nbformat.from_dict({key: cell.metadata[key] for key in ("tags",) if key in cell.metadata})


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


def strip(folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    for notebook in notebook_paths():
        nb = nbformat.read(notebook, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        clean(nb)
        nbformat.write(nb, folder / notebook.name)
    (folder / "helpers").mkdir(exist_ok=True)
    for helper in (NOTEBOOKS / "helpers").glob("*.py"):
        (folder / "helpers" / helper.name).write_text(helper.read_text())
    for picture in NOTEBOOKS.glob("images/*"):
        (folder / "images").mkdir(exist_ok=True)
        (folder / "images" / picture.name).write_bytes(picture.read_bytes())


def main(argv: list[str]) -> int:
    command, *rest = argv or ["--help"]
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
    elif command == "strip" and len(rest) == 1:
        strip(Path(rest[0]))
        print(f"output-free copies written to {rest[0]}/")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
