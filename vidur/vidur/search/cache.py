"""Finished work on disk, so an interrupted search resumes where it stopped: one JSON file per
key (a hash of everything the result depends on), written atomically, safe across processes."""

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def cache_key(parts: dict[str, Any]) -> str:
    canonical = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class DiskCache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def get(self, key: str) -> Any | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None  # a file cut short by a crash counts as missing

    def put(self, key: str, value: Any) -> None:
        path = self._path(key)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
        temporary.write_text(json.dumps(value, default=str))
        os.replace(temporary, path)
