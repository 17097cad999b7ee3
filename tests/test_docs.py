"""The user's guide (``docs/`` with ``mkdocs.yml``) and the README that points into it.

``mkdocs build --strict`` turns every warning into a failure: a link to a page or an anchor that
does not exist, a page left out of the nav. CI runs it too (``.ci/run``); here it fails the suite
as well, so a section renamed or moved breaks a test, not only the published site.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_docs_build_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is in the dev group (uv sync installs it)")
    site = tmp_path / "site"
    result = subprocess.run(
        # no --quiet: it hides the warnings, and --strict then has none to count
        [sys.executable, "-m", "mkdocs", "build", "--strict",
         "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        check=False, capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}{result.stderr}"
    assert (site / "index.html").is_file()
    for page in sorted((ROOT / "docs").glob("*.md")):
        name = "index.html" if page.stem == "index" else f"{page.stem}/index.html"
        assert (site / name).is_file(), f"docs/{page.name} was not built"


def _anchors(page: Path) -> set[str]:
    """The anchors mkdocs gives the headings of ``page`` (Python-Markdown's toc slugs)."""
    from markdown.extensions.toc import slugify

    anchors, fenced = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6} (.*)", line)):
            anchors.add(slugify(m.group(1).replace("`", ""), "-"))
    return anchors


def test_readme_links_into_the_repository_resolve():
    """mkdocs does not read the README: its links to docs/ pages (and other files) and their
    anchors are checked here, so moving a section cannot leave the README pointing nowhere."""
    links = re.findall(r"\]\(([^)\s]+)\)", README.read_text())
    local = [link for link in links if not re.match(r"[a-z][a-z0-9+.-]*:", link)]
    assert any(link.startswith("docs/") for link in local), "the README should point into docs/"
    for link in local:
        path, _, anchor = link.partition("#")
        assert path, f"README.md links to its own anchor #{anchor}: its guide sections are in docs/"
        assert (ROOT / path).exists(), f"README.md links to {path}, which does not exist"
        if anchor and path.endswith(".md"):
            pytest.importorskip("markdown", reason="mkdocs's Markdown gives the anchors")
            assert anchor in _anchors(ROOT / path), f"README.md links to {link}: no such heading"


def test_ci_runs_the_readme_commands():
    """The README's test command and its docs build are what CI runs."""
    readme, ci = README.read_text(), (ROOT / ".ci" / "run").read_text()
    for command in ("uv run pytest", "uv run mkdocs build --strict"):
        assert command in readme, f"the README no longer says `{command}`"
        assert command in ci, f".ci/run does not run `{command}`"
