"""A search's points as Ray tasks, one deployment's capacity search per task, on a Ray cluster or
on a local Ray started for the run. Imported only by `vidur search --ray`: Ray is the optional
extra `servekit-vidur[ray]`.

A worker lost mid-search loses only its point: Ray runs the task again (`MAX_RETRIES`), and the
retry takes what the cache already holds (the point, else its probes). Every worker reads and
writes the search's cache directory, so on a cluster it should be on a disk all nodes share; the
driver also records each finished point in it, so resuming works even where the nodes' disks
are their own."""

import os
import socket
from collections.abc import Iterator
from types import ModuleType

from vidur.search.cache import DiskCache
from vidur.search.runner import SearchJob, SearchPoint, evaluate_point

LOCAL = "local"  # `ray.init`'s address for a new local Ray
MAX_RETRIES = 3  # times a point's task runs again after its worker died
# A local Ray for the search alone: on the loopback address only (read when Ray is imported:
# without it a node takes the machine's outward address), and no usage reports.
LOCAL_ENVIRONMENT = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def connect(address: str, num_cpus: int) -> bool:
    """Connects this process to the Ray at `address`, or with `LOCAL` starts a single-node Ray of
    `num_cpus` CPUs on 127.0.0.1 without the dashboard. A process already connected keeps its
    Ray. Whether this call connected (then the caller disconnects, which stops a local Ray)."""
    if address == LOCAL:
        os.environ.update(LOCAL_ENVIRONMENT)
    ray = _import_ray()
    if ray.is_initialized():
        return False
    if address == LOCAL:
        ray.init(LOCAL, num_cpus=num_cpus, include_dashboard=False)
        return True
    _refuse_if_unreachable(address)
    try:
        ray.init(address)
    except ConnectionError as error:
        raise RuntimeError(f"cannot join the Ray cluster at {address}: {error}") from error
    return True


def _refuse_if_unreachable(address: str) -> None:
    """Ray waits minutes for a cluster that does not answer: a `host:port` (or `ray://host:port`)
    nobody listens on is refused at once."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # `auto`, and the forms only Ray resolves
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        raise RuntimeError(f"no Ray cluster answers at {address}: {error}") from error


def disconnect() -> None:
    """Disconnects this process from its Ray, which stops a local one `connect` started."""
    _import_ray().shutdown()


def map_on_ray(jobs: list[SearchJob], cache: DiskCache, address: str, num_cpus: int) -> Iterator[SearchPoint]:
    """Each job's point as it finishes, also recorded in `cache`."""
    if not jobs:
        return
    connected = connect(address, num_cpus)
    ray = _import_ray()
    try:
        task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False)(evaluate_point)
        keys = {task.remote(job): job.point_key() for job in jobs}
        pending = list(keys)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            point: SearchPoint = ray.get(done[0])
            cache.put(keys[done[0]], point.as_dict())
            yield point
    finally:
        if connected:
            disconnect()


def _import_ray() -> ModuleType:
    try:
        import ray
    except ImportError as error:
        raise RuntimeError("vidur search --ray needs Ray: pip install 'servekit-vidur[ray]'") from error
    return ray
