"""The trained predictor, kept on disk between runs: training reads and fits every profile table
(seconds), loading its pickle takes milliseconds.

An entry is keyed by the profile files (each root's path, and every table's and device spec's
path, size and modification time) and by the code that trains and holds the predictor (the vidur
package's sources and the simulator extension), so changing either trains anew. An entry that cannot be read (cut
short, or pickled by other code) is trained again and replaced. The cache is the user's own
directory: its pickles are trusted like the code itself.
"""

import contextlib
import hashlib
import os
import pickle
import sys
from pathlib import Path

import numpy as np

from vidur import _simulator
from vidur.predictor import OperatorPredictor

_PACKAGE = Path(__file__).resolve().parent
_PROFILE_FILES = ("*.csv", "device.json")


def profile_fingerprint(roots: list[Path]) -> str:
    """Changes whenever a profile file does (path, size or modification time): the tables and
    a profiled device's spec."""
    digest = hashlib.sha256()
    for root in roots:
        paths = sorted(path for pattern in _PROFILE_FILES for path in root.rglob(pattern))
        for path in paths:
            stat = path.stat()
            digest.update(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def training_code_fingerprint() -> str:
    """Changes whenever the predictor's code does: any module of the vidur package."""
    digest = hashlib.sha256(f"{sys.version_info[:2]} numpy {np.__version__}".encode())
    for source in sorted(_PACKAGE.rglob("*.py")):
        digest.update(source.read_bytes())
    extension = os.stat(_simulator.__file__ or "")
    digest.update(f"{extension.st_size}:{extension.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def cache_path(roots: list[Path], cache_dir: Path) -> Path:
    """Where the predictor trained on `roots` is kept."""
    digest = hashlib.sha256()
    for root in roots:
        digest.update(f"{root.resolve()}\n".encode())
    digest.update(f"{profile_fingerprint(roots)} {training_code_fingerprint()}".encode())
    return cache_dir / f"predictor-{digest.hexdigest()[:24]}.pickle"


def _load(path: Path) -> OperatorPredictor | None:
    try:
        with path.open("rb") as file:
            loaded = pickle.load(file)
    except FileNotFoundError:
        return None
    # A damaged pickle can fail in any of these ways; each means "train again".
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError, ValueError):
        return None
    return loaded if isinstance(loaded, OperatorPredictor) else None


def _store(predictor: OperatorPredictor, path: Path) -> None:
    """Writes atomically; a cache directory that cannot be written only costs the next run time."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with temporary.open("wb") as file:
            pickle.dump(predictor, file, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink()


def cached_predictor(roots: list[Path], cache_dir: Path | None) -> OperatorPredictor:
    """The predictor trained on `roots`: from `cache_dir` when an entry for these profiles and
    this code is there, else trained and stored there. No `cache_dir`: always trained."""
    if cache_dir is None:
        return OperatorPredictor.train(roots)
    path = cache_path(roots, cache_dir)
    cached = _load(path)
    if cached is not None:
        return cached
    trained = OperatorPredictor.train(roots)
    _store(trained, path)
    return trained
