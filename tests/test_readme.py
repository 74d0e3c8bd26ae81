"""The README's tour and its Python, run for real: every `$ ` command of its `console` block in a
fresh folder (the `tour` fixture: with this repository's `tests/` beside it, as at the repository
root), each must exit 0 and print the README's output lines (numbers aside: they are the README's
run's); then its Python blocks in the same folder. So the README can't drift from what the
commands do."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CPU_LINES = ("machine:", "int8:", "  int8 path   ")  # what this CPU is and does: they differ between machines


def test_the_tour_and_the_python_run_as_the_readme_shows(tour, readme):
    assert [command.split()[0] for command, _ in readme.console(0)[:3]] == [".", "mkdir", "resnet-export"]
    assert len(tour.steps) == len(readme.console(0)) - 1  # every command but the activation ran
    for command, shown, done in tour.steps:
        assert done.returncode == 0, f"{command}\n{done.stderr}"
        printed = {readme.shape(line) for line in done.stdout.splitlines()}
        # The machine and INT8-path lines name the README's CPU: they must be there, the rest as shown.
        machine = [line for line in shown if line.startswith(CPU_LINES)]
        missing = [line for line in shown if line not in machine and readme.shape(line) not in printed]
        assert not missing, f"{command} no longer prints: {missing}"
        for line in machine:
            prefix = next(p for p in CPU_LINES if line.startswith(p))
            assert any(printed_line.startswith(prefix) for printed_line in done.stdout.splitlines()), (command, prefix)
    for code in readme.blocks("python"):
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=tour.folder, env=tour.environment, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr


def test_the_docs_name_what_exists():
    """Every page the README and the docs link to exists, and every name the docs' Python imports
    is there (the snippets need files of the reader's, so they are not run)."""
    import ast
    import importlib

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)#]+\.md)(?:#[^)]*)?\)", text):
            assert (page.parent / target).is_file(), f"{page.name} links to {target}, which does not exist"
        for code in re.findall(r"```python\n(.*?)```", text, re.S):
            for node in ast.walk(ast.parse(code)):
                if isinstance(node, ast.ImportFrom):
                    module = importlib.import_module(node.module)
                    for alias in node.names:
                        assert hasattr(module, alias.name), f"{page.name}: {node.module} has no {alias.name}"
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        if alias.name.split(".")[0] in ("resnet", "deploy", "export", "benchmark", "toolkit"):
                            importlib.import_module(alias.name)
