"""Self-contained HTML pages of metron's tables and plots: every plot embedded as a data: URI, the
style inline, no script and nothing fetched, so a page opens offline and can be sent as one file."""

import base64
import html
from collections.abc import Sequence
from pathlib import Path

import msgspec

_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:80em}"
    "table{border-collapse:collapse;margin:1em 0}"
    "th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}"
    "th{background:#f2f2f2}th:first-child,td:first-child{text-align:left}"
    "img{max-width:100%;display:block;margin:1em 0}"
    "pre{background:#f7f7f7;padding:.6em;overflow-x:auto}"
)


class Link(msgspec.Struct, frozen=True):
    """A table cell that links to a relative path (a level's report, a configuration's directory)."""

    text: str
    href: str


Cell = str | Link


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    head = "".join(f"<th>{html.escape(header)}</th>" for header in headers)
    body = "".join("<tr>" + "".join(f"<td>{_cell(cell)}</td>" for cell in row) + "</tr>\n" for row in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"


def _cell(cell: Cell) -> str:
    if isinstance(cell, Link):
        return f'<a href="{html.escape(cell.href, quote=True)}">{html.escape(cell.text)}</a>'
    return html.escape(cell)


def image(path: Path, alt: str) -> str:
    """The PNG at `path`, embedded."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt, quote=True)}" src="data:image/png;base64,{data}">'


def paragraph(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def heading(text: str, level: int = 2) -> str:
    return f"<h{level}>{html.escape(text)}</h{level}>"


def preformatted(lines: Sequence[str]) -> str:
    return "<pre>" + html.escape("\n".join(lines)) + "</pre>"


def write_page(path: Path, title: str, parts: Sequence[str]) -> Path:
    """`parts` are HTML fragments built with this module's functions (their text is escaped)."""
    document = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n" + "\n".join(parts) + "\n</body>\n</html>\n"
    )
    path.write_text(document, encoding="utf-8")
    return path
