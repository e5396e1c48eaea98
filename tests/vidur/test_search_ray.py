"""`vidur search --ray`: a search's points as Ray tasks on a local Ray of 2 CPUs (started once for
the module) give the process pool's results bit for bit, cache and resume alike; a worker killed
mid-point loses only that point, which is retried; the CLI searches on a running Ray cluster; and
the default search (the process pool) never imports Ray."""

import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from vidur import OperatorPredictor
from vidur.config import VidurConfig, default_profiling_roots, load_config
from vidur.predictor_cache import cache_path
from vidur.search.on_ray import LOCAL, connect, disconnect
from vidur.search.runner import SearchPoint, evaluate_point, plan_search, run_search

SPACE = """
[replica]
model = "llama-3-8b"
[workload]
num_requests = {num_requests}
seed = 4
[workload.arrivals]
kind = "poisson"
rate = 1.0
[workload.lengths]
kind = "trace"
trace_path = "sharegpt_8k_filtered_stats_llama2_tokenizer.csv"
[slo]
kind = "tbt_ttft"
p99_tbt_s = 0.05
p90_ttft_s = 1.0
[search]
gpus = {gpus}
tensor_parallel = [1, 2]
initial_qps = 4.0
max_qps = 256.0
precision = 0.2
"""


def space_file(directory: Path, num_requests: int, gpus: list[str]) -> Path:
    path = directory / "space.toml"
    path.write_text(SPACE.format(num_requests=num_requests, gpus=json.dumps(gpus)))
    return path


def cache_files(cache: Path) -> dict[str, bytes]:
    """What a search left in its cache, less the temporary files of writes cut short."""
    return {path.name: path.read_bytes() for path in cache.iterdir() if not path.name.startswith(".")}


def search(config: VidurConfig, predictor: OperatorPredictor, cache: Path, ray_address: str | None) -> list[dict]:
    points = run_search(
        config, predictor, cache_dir=cache, fingerprint="test", workers=2, progress=False, ray_address=ray_address
    )
    return [p.as_dict() for p in points]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[ModuleType]:
    environment = dict(os.environ)
    assert connect(LOCAL, num_cpus=2)
    import ray

    yield ray
    disconnect()
    os.environ.clear()
    os.environ.update(environment)


@pytest.fixture(scope="module")
def space(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> VidurConfig:
    directory = tmp_path_factory.mktemp("space")
    return load_config(str(space_file(directory, 100, ["h100", "a40"])), [], traces_dir=data_dir / "traces")


@pytest.fixture(scope="module")
def by_the_pool(
    space: VidurConfig, predictor: OperatorPredictor, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[dict], dict[str, bytes]]:
    cache = tmp_path_factory.mktemp("pool") / "cache"
    return search(space, predictor, cache, None), cache_files(cache)


def test_a_local_ray_search_gives_the_process_pools_results_bit_for_bit(
    local_ray: ModuleType, space: VidurConfig, predictor: OperatorPredictor, by_the_pool: tuple, tmp_path: Path
) -> None:
    assert [node["NodeManagerAddress"] for node in local_ray.nodes()] == ["127.0.0.1"]
    assert local_ray.cluster_resources()["CPU"] == 2
    points, files = by_the_pool
    assert len(points) == 4 and all(p["capacity_qps"] > 0 for p in points)

    cache = tmp_path / "cache"
    assert search(space, predictor, cache, LOCAL) == points
    assert cache_files(cache) == files  # every probe and point, byte for byte

    # The pool's search, stopped before its first point was finished, resumed on Ray: only that
    # point runs, from its cached probes, and nothing finished is written again.
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    for name, content in files.items():
        if json.loads(content).get("name") != points[0]["name"]:
            (resumed / name).write_bytes(content)
    before = {path.name: path.stat().st_mtime_ns for path in resumed.iterdir()}
    assert len(before) == len(files) - 1
    assert search(space, predictor, resumed, LOCAL) == points
    assert cache_files(resumed) == files
    assert all(path.stat().st_mtime_ns == before[path.name] for path in resumed.iterdir() if path.name in before)


def test_a_worker_killed_mid_point_loses_only_that_point(
    local_ray: ModuleType, space: VidurConfig, predictor: OperatorPredictor, by_the_pool: tuple, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    outcome: list[list[dict]] = []
    searching = threading.Thread(target=lambda: outcome.append(search(space, predictor, cache, LOCAL)))
    searching.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and searching.is_alive() and time.monotonic() < deadline:
        killed = next(iter(task_workers()), None)
        if killed is None:
            time.sleep(0.01)
    assert killed is not None, "no worker ran a point"
    os.kill(killed, signal.SIGKILL)
    searching.join(timeout=120)
    assert not searching.is_alive()
    points, files = by_the_pool
    assert outcome == [points]
    assert cache_files(cache) == files


def task_workers() -> list[int]:
    """This process's descendants running a point's task (Ray names a worker after its task)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, unvisited = [], [os.getpid()]
    while unvisited:
        for child in children.get(unvisited.pop(), []):
            unvisited.append(child)
            try:
                if (Path("/proc") / str(child) / "cmdline").read_bytes().startswith(b"ray::evaluate_point\0"):
                    found.append(child)
            except OSError:
                continue
    return found


def test_a_retried_point_finished_before_its_worker_died_is_not_redone(
    space: VidurConfig, predictor: OperatorPredictor, by_the_pool: tuple, tmp_path: Path
) -> None:
    points, files = by_the_pool
    cache = tmp_path / "cache"
    jobs, _ = plan_search(space, space.search, predictor, cache, "test")
    job = jobs[0]
    cache.mkdir()
    (cache / f"{job.point_key()}.json").write_bytes(files[f"{job.point_key()}.json"])
    point: SearchPoint = evaluate_point(job)
    assert point.as_dict() == next(p for p in points if p["name"] == point.name)
    assert [path.name for path in cache.iterdir()] == [f"{job.point_key()}.json"]  # no probe run


def vidur_search(
    args: list[str], predictor: OperatorPredictor, data_dir: Path, directory: Path
) -> subprocess.CompletedProcess[str]:
    """`vidur search` in a fresh process, with the predictor trained here in its cache, after
    which the process asserts it never imported Ray unless `--ray` was given."""
    cache = directory / "predictors"
    path = cache_path(default_profiling_roots(data_dir), cache)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(predictor))
    program = "import sys; from vidur.cli import main; code = main(sys.argv[1:]); "
    program += "assert ('--ray' in sys.argv) == ('ray' in sys.modules), 'ray imported'; sys.exit(code)"
    command = [sys.executable, "-c", program, "search", "--data-dir", str(data_dir), "--no-progress"]
    command += ["--predictor-cache-dir", str(cache), "--output-dir", str(directory / "out"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def search_document(finished: subprocess.CompletedProcess[str], directory: Path) -> dict:
    assert finished.returncode == 0, finished.stderr
    return json.loads((directory / "out" / "search.json").read_text())


def test_the_cli_searches_on_a_running_ray_cluster_and_leaves_it_running(
    local_ray: ModuleType, data_dir: Path, predictor: OperatorPredictor, by_the_pool: tuple, tmp_path: Path
) -> None:
    address = local_ray.get_runtime_context().gcs_address
    config = space_file(tmp_path, 100, ["h100", "a40"])
    finished = vidur_search(["--config", str(config), "--ray", address], predictor, data_dir, tmp_path)
    points, _ = by_the_pool
    document = search_document(finished, tmp_path)
    assert document["points"] == points
    assert local_ray.cluster_resources()["CPU"] == 2


def test_the_default_search_runs_in_worker_processes_without_importing_ray(
    data_dir: Path, predictor: OperatorPredictor, tmp_path: Path
) -> None:
    config = space_file(tmp_path, 60, ["h100"])
    finished = vidur_search(["--config", str(config), "--workers", "2"], predictor, data_dir, tmp_path)
    document = search_document(finished, tmp_path)
    assert [p["name"] for p in document["points"]] == [
        "h100 tp=1 pp=1 x1 sarathi budget=512 seqs=128",
        "h100 tp=2 pp=1 x1 sarathi budget=512 seqs=128",
    ]
    assert all(p["capacity_qps"] > 0 for p in document["points"])


def test_a_ray_address_nobody_answers_at_is_refused_at_once(
    data_dir: Path, predictor: OperatorPredictor, tmp_path: Path
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{unused.getsockname()[1]}"
    config = space_file(tmp_path, 60, ["h100"])
    finished = vidur_search(["--config", str(config), "--ray", address], predictor, data_dir, tmp_path)
    assert finished.returncode == 2
    assert f"vidur: error: no Ray cluster answers at {address}: [Errno 111] Connection refused" in finished.stderr
