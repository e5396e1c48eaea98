"""Writing profile rows as CSV in Vidur's table format."""

import csv
from pathlib import Path


def write_csv(rows: list[dict[str, object]], path: Path) -> None:
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
