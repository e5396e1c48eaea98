"""The trained predictor is cached on disk: a second run loads it, a changed profile file or
changed predictor code trains anew, and a damaged or unwritable cache only costs a training."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from vidur import OperatorPredictor, predictor_cache
from vidur.predictor_cache import cache_path, cached_predictor, training_code_fingerprint

TABLES = ("compute/h100/microsoft/phi-2/mlp.csv", "network/h100_pairwise_nvlink/all_reduce.csv")


@pytest.fixture
def profiles(data_dir: Path, tmp_path: Path) -> Path:
    """A small profiling root of its own, so the test may change its files."""
    root = tmp_path / "profiling"
    for table in TABLES:
        (root / table).parent.mkdir(parents=True)
        shutil.copy(data_dir / "profiling" / table, root / table)
    return root


@pytest.fixture
def trainings(monkeypatch: pytest.MonkeyPatch) -> list[list[Path]]:
    """The roots of every training from here on."""
    calls: list[list[Path]] = []
    train = OperatorPredictor.train

    def counted(roots: list[Path]) -> OperatorPredictor:
        calls.append(roots)
        return train(roots)

    monkeypatch.setattr(OperatorPredictor, "train", counted)
    return calls


def same_predictions(a: OperatorPredictor, b: OperatorPredictor) -> bool:
    return (
        a.profile_curves == b.profile_curves
        and a.rooflines == b.rooflines
        and a.attention == b.attention
        and a.network_curves == b.network_curves
    )


def test_a_second_run_loads_the_cached_predictor(profiles: Path, tmp_path: Path, trainings: list[list[Path]]) -> None:
    first = cached_predictor([profiles], tmp_path / "cache")
    second = cached_predictor([profiles], tmp_path / "cache")
    assert len(trainings) == 1 and same_predictions(first, second) and second.train_s == first.train_s
    assert cache_path([profiles], tmp_path / "cache").is_file()


def test_a_changed_profile_file_trains_anew(profiles: Path, tmp_path: Path, trainings: list[list[Path]]) -> None:
    cached_predictor([profiles], tmp_path / "cache")
    table = profiles / TABLES[0]
    stat = table.stat()
    os.utime(table, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    cached_predictor([profiles], tmp_path / "cache")
    assert len(trainings) == 2
    assert len(list((tmp_path / "cache").glob("predictor-*.pickle"))) == 2


def test_changed_predictor_code_trains_anew(
    profiles: Path, tmp_path: Path, trainings: list[list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "vidur_code"
    package.mkdir()
    source = package / "predictor_code.py"
    source.write_text("FITS = 1\n")
    monkeypatch.setattr(predictor_cache, "_PACKAGE", package)
    before = training_code_fingerprint()
    cached_predictor([profiles], tmp_path / "cache")
    source.write_text("FITS = 2\n")
    assert training_code_fingerprint() != before
    cached_predictor([profiles], tmp_path / "cache")
    assert len(trainings) == 2


def test_a_changed_device_spec_trains_anew(profiles: Path, tmp_path: Path, trainings: list[list[Path]]) -> None:
    device = profiles / "compute" / "h100" / "device.json"
    device.write_text('{"name": "h100"}')
    cached_predictor([profiles], tmp_path / "cache")
    device.write_text('{"name": "h100", "memory_gib": 80}')
    os.utime(device, ns=(device.stat().st_atime_ns, device.stat().st_mtime_ns + 1_000_000_000))
    cached_predictor([profiles], tmp_path / "cache")
    assert len(trainings) == 2


@pytest.mark.parametrize("damage", [b"", b"not a pickle", b"\x80\x05\x95garbage"])
def test_a_damaged_cache_file_is_trained_again_and_replaced(
    profiles: Path, tmp_path: Path, trainings: list[list[Path]], damage: bytes
) -> None:
    reference = cached_predictor([profiles], tmp_path / "cache")
    cache_path([profiles], tmp_path / "cache").write_bytes(damage)
    again = cached_predictor([profiles], tmp_path / "cache")
    assert len(trainings) == 2 and same_predictions(reference, again)
    cached_predictor([profiles], tmp_path / "cache")
    assert len(trainings) == 2  # the replaced file loads


def test_an_unwritable_cache_only_costs_training(profiles: Path, tmp_path: Path, trainings: list[list[Path]]) -> None:
    blocked = tmp_path / "a file, not a directory"
    blocked.write_text("")
    predictor = cached_predictor([profiles], blocked)
    assert len(trainings) == 1 and predictor.profile_curves
    cached_predictor([profiles], None)
    assert len(trainings) == 2
    assert np.isfinite(predictor.train_s)
