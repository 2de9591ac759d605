"""The documentation that users read matches the code: CLI reference current, quick start intact."""

import difflib
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_current():
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    current, rendered = (ROOT / "docs" / "cli.md").read_text(), module.render()
    diff = "".join(difflib.unified_diff(current.splitlines(True), rendered.splitlines(True), "docs/cli.md", "--help"))
    assert not diff, f"docs/cli.md is stale (run: python scripts/cli_reference.py):\n{diff[:3000]}"


def test_readme_quick_start_has_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
