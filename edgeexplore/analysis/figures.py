"""Writing the analysis plots: one rule for the file types, the headless backend and the page.

Every plot (:func:`edgeexplore.analysis.pareto.plot`, :func:`edgeexplore.analysis.curves.
plot_curves`, :func:`edgeexplore.analysis.fidelity.plot`) goes to ``.png``, ``.svg`` or ``.pdf``
and, where it says so, to a self-contained ``.html`` page (the SVG inline, no network). Commands
call :func:`plot_path` before any slow work, so a wrong file name fails first, not after it.
"""

from __future__ import annotations

import html
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import EdgeExploreError

IMAGES = (".png", ".svg", ".pdf")
PAGES = (".html", ".htm")


def plot_path(path: str | Path, page: bool = True) -> Path:
    """``path`` as a Path when a plot can be written there (``page``: an .html page too)."""
    path = Path(path)
    if path.suffix.lower() not in IMAGES + (PAGES if page else ()):
        kinds = "a .png, .svg, .pdf or .html file" if page else "a .png, .svg or .pdf file"
        raise EdgeExploreError(f"cannot plot to {path.name}: use {kinds}")
    folder = path.expanduser().resolve().parent
    if not folder.is_dir():  # said before the work the plot shows, not after it
        raise EdgeExploreError(f"cannot plot to {path}: folder {folder} does not exist")
    return path


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display on servers)."""
    import matplotlib

    matplotlib.use("Agg")  # must precede pyplot
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: str | Path, title: str, page: bool = True,
         after: Callable[[], str] | None = None, style: str = "") -> Path:
    """Write ``fig`` to ``path`` and close it. An .html page is titled ``title`` and holds the
    figure as inline SVG, then ``after()`` (HTML, e.g. a table) styled by ``style`` (CSS)."""
    path = plot_path(path, page)
    plt = pyplot()
    try:
        if path.suffix.lower() in PAGES:
            buf = io.StringIO()
            fig.savefig(buf, format="svg", bbox_inches="tight")
            svg = buf.getvalue()
            svg = svg[svg.find("<svg"):]  # drop the XML prolog and doctype inside HTML
            name = html.escape(title)
            css = f"<style>{style}</style>" if style else ""
            path.write_text(
                "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
                f"<title>{name}</title>{css}</head><body><h1>{name}</h1>{svg}"
                f"{after() if after else ''}</body></html>\n", encoding="utf-8")
        else:
            fig.savefig(path, dpi=150, bbox_inches="tight")
    except OSError as e:
        raise EdgeExploreError(f"cannot write {path}: {e.strerror}") from None
    finally:
        plt.close(fig)
    return path


__all__ = ["IMAGES", "PAGES", "plot_path", "pyplot", "save"]
