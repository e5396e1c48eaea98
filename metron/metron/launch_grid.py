"""The configurations a launched capacity search walks: `--grid key=v1,v2` flags, their
combinations in a stable order (keys as given, the first one slowest; values as given), the
command template each fills in, and the table of results (launch.json, launch.md, launch.html).

A template's placeholders are `{port}` and `{rpc_port}` (free loopback ports metron picks) and
every grid key; `{{` and `}}` are literal braces."""

import itertools
import re
import shlex
import string
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import msgspec

from metron import html_page

PORT_PLACEHOLDERS = ("port", "rpc_port")
LAUNCH_TABLE_FILES = ("launch.json", "launch.md", "launch.html")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._=,+-]")


class Grid(msgspec.Struct, frozen=True):
    """Grid keys in the order given, each with its values in the order given."""

    values: dict[str, list[str]]

    @classmethod
    def parse(cls, specs: Iterable[str]) -> "Grid":
        values: dict[str, list[str]] = {}
        for spec in specs:
            key, equals, listed = spec.partition("=")
            key = key.strip()
            if not equals:
                raise ValueError(f"--grid {spec!r} needs the form KEY=VALUE1,VALUE2")
            if not _KEY.fullmatch(key):
                raise ValueError(f"--grid {spec!r}: the key must be a name (letters, digits, _), got {key!r}")
            if key in PORT_PLACEHOLDERS:
                raise ValueError(f"--grid {spec!r}: {{{key}}} is metron's own placeholder, choose another key")
            if key in values:
                raise ValueError(f"--grid key {key!r} is given twice")
            parts = [part.strip() for part in listed.split(",")]
            if not all(parts):
                raise ValueError(f"--grid {spec!r} has an empty value")
            if len(set(parts)) != len(parts):
                raise ValueError(f"--grid {spec!r} repeats a value")
            values[key] = parts
        return cls(values=values)

    def combinations(self) -> list[dict[str, str]]:
        keys = list(self.values)
        return [dict(zip(keys, chosen, strict=True)) for chosen in itertools.product(*self.values.values())]


def placeholders(template: str, what: str) -> set[str]:
    """The names in `template`'s `{...}`; ValueError (naming `what`) for anything but plain names."""
    try:
        fields = [field for _, field, spec, conversion in string.Formatter().parse(template) if field is not None]
    except ValueError as error:
        raise ValueError(f"{what} {template!r}: {error} (write {{{{ and }}}} for literal braces)") from None
    for field in fields:
        if not _KEY.fullmatch(field):
            raise ValueError(f"{what} {template!r}: placeholder {{{field}}} must be a plain name")
    return set(fields)


def check_templates(grid: Grid, templates: Mapping[str, str]) -> None:
    """Every placeholder of every template (named by its flag) is a grid key or a port, and every
    grid key is used somewhere (else its configurations would be the same)."""
    known = set(grid.values) | set(PORT_PLACEHOLDERS)
    used: set[str] = set()
    for what, template in templates.items():
        names = placeholders(template, what)
        unknown = sorted(names - known)
        if unknown:
            raise ValueError(
                f"{what} uses {', '.join('{' + name + '}' for name in unknown)}, which no --grid key "
                f"or built-in ({', '.join('{' + name + '}' for name in PORT_PLACEHOLDERS)}) provides"
            )
        used |= names
    unused = [key for key in grid.values if key not in used]
    if unused:
        raise ValueError(f"--grid key {unused[0]!r} is not used by {' or '.join(templates)}")


def fill(template: str, values: Mapping[str, str]) -> str:
    return template.format_map(values)


def command_argv(template: str, values: Mapping[str, str]) -> list[str]:
    """Split first, fill in after, so a value with spaces stays one argument."""
    try:
        words = shlex.split(template)
    except ValueError as error:
        raise ValueError(f"--launch {template!r} cannot be split into words: {error}") from None
    if not words:
        raise ValueError("--launch is empty")
    return [fill(word, values) for word in words]


def configuration_name(values: Mapping[str, str]) -> str:
    """`policy=sarathi,chunk=256`: the directory of one configuration (unsafe characters become _)."""
    name = ",".join(f"{key}={value}" for key, value in values.items()) or "default"
    return _UNSAFE_IN_NAME.sub("_", name)


def configuration_names(grid: Grid) -> list[str]:
    names = [configuration_name(values) for values in grid.combinations()]
    if len(set(names)) != len(names):
        raise ValueError("two --grid configurations get the same directory name: make their values differ in letters or digits")
    return names


class LaunchRow(msgspec.Struct, frozen=True, kw_only=True):
    """One configuration's outcome: a capacity, or a failure with the end of the server's log."""

    values: dict[str, str]
    directory: str
    command: list[str]
    pid: int | None = None
    capacity_qps: float | None = None
    converged: bool | None = None
    failure: str | None = None
    log_tail: list[str] = []


def write_launch_table(root: Path, template: str, grid: Grid, rows: Sequence[LaunchRow]) -> None:
    document = {"launch": template, "grid": grid.values, "configurations": list(rows)}
    (root / "launch.json").write_bytes(msgspec.json.format(msgspec.json.encode(document), indent=2) + b"\n")
    keys = list(grid.values)
    lines = [
        "# metron capacity per launched configuration",
        "",
        f"Launch command: `{template}`",
        "",
        "| " + " | ".join([*keys, "capacity (QPS)", "directory"]) + " |",
        "|" + "---|" * (len(keys) + 2),
    ]
    for row in rows:
        if row.failure is not None:
            outcome = _outcome(row)
        else:
            outcome = f"**{row.capacity_qps:.4g}**" + ("" if row.converged else " (not converged)")
        relative = _relative(root, row.directory)
        cells = [*(row.values[key] for key in keys), outcome.replace("|", "\\|"), f"[{relative}]({relative})"]
        lines.append("| " + " | ".join(cells) + " |")
    for row in rows:
        if row.failure is not None and row.log_tail:
            lines += ["", f"## {Path(row.directory).name}: the end of its server log", "", "```", *row.log_tail, "```"]
    (root / "launch.md").write_text("\n".join(lines) + "\n")
    _write_launch_page(root, template, keys, rows)


def _outcome(row: LaunchRow) -> str:
    if row.failure is not None:
        return f"failed: {row.failure}"
    return f"{row.capacity_qps:.4g}" + ("" if row.converged else " (not converged)")


def _write_launch_page(root: Path, template: str, keys: Sequence[str], rows: Sequence[LaunchRow]) -> None:
    table: list[list[html_page.Cell]] = []
    for row in rows:
        relative = _relative(root, row.directory)
        table.append([*(row.values[key] for key in keys), _outcome(row), html_page.Link(relative, relative)])
    parts = [
        html_page.paragraph(f"Launch command: {template}"),
        html_page.table([*keys, "capacity (QPS)", "directory"], table),
    ]
    for row in rows:
        if row.failure is not None and row.log_tail:
            parts.append(html_page.heading(f"{Path(row.directory).name}: the end of its server log"))
            parts.append(html_page.preformatted(row.log_tail))
    html_page.write_page(root / "launch.html", "metron capacity per launched configuration", parts)


def _relative(root: Path, directory: str) -> str:
    return str(Path(directory).relative_to(root)) if Path(directory).is_relative_to(root) else directory
