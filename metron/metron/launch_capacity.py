"""Capacity per launched configuration: for each grid combination, start the server on free
loopback ports, wait until it is healthy, run the capacity search against it into the
configuration's directory, stop it; a server that fails is recorded with its log's tail and the
next configuration goes on. The table is rewritten after every configuration, so an interrupted
walk keeps what it found.

    ROOT/launch.json, ROOT/launch.md          one row per configuration
    ROOT/<policy=sarathi,chunk=256>/server.log
    ROOT/<policy=sarathi,chunk=256>/capacity/ the capacity search (capacity.json, qps_*/)
"""

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import msgspec

from metron.launch import LaunchedServer, ServerFailedToStart, free_loopback_ports
from metron.launch_grid import (
    LAUNCH_TABLE_FILES,
    PORT_PLACEHOLDERS,
    Grid,
    LaunchRow,
    check_templates,
    command_argv,
    configuration_name,
    configuration_names,
    fill,
    write_launch_table,
)
from metron.targets.base import TargetError

SERVER_LOG = "server.log"
SEARCH_DIRECTORY = "capacity"
LAUNCHED_URL = "http://127.0.0.1:{port}"
LAUNCHED_ENGINE = "127.0.0.1:{rpc_port}"
HEALTH_URL = LAUNCHED_URL + "/health"
LAUNCH_TIMEOUT_S = 300.0
STOP_GRACE_S = 10.0


class LaunchPlan(msgspec.Struct, frozen=True, kw_only=True):
    command: str
    """The --launch template."""
    grid: Grid
    root: Path
    health_url: str = HEALTH_URL
    """A template too."""
    launch_timeout_s: float = LAUNCH_TIMEOUT_S
    stop_grace_s: float = STOP_GRACE_S

    def __post_init__(self) -> None:
        if not self.launch_timeout_s > 0:
            raise ValueError(f"--launch-timeout must be positive, got {self.launch_timeout_s}")
        if not self.stop_grace_s >= 0:
            raise ValueError(f"--stop-grace must be at least 0, got {self.stop_grace_s}")


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("launched configurations")
    group.add_argument(
        "--launch",
        metavar="COMMAND",
        help="start this server for each --grid configuration and search its capacity; placeholders: "
        "{port}, {rpc_port} (free loopback ports) and the grid keys",
    )
    group.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", help="--launch: one key's values")
    group.add_argument(
        "--launch-health",
        default=HEALTH_URL,
        metavar="URL",
        help="--launch: ready when this answers 200 (a template too)",
    )
    group.add_argument("--launch-timeout", type=float, default=LAUNCH_TIMEOUT_S, metavar="S")
    group.add_argument(
        "--stop-grace",
        type=float,
        default=STOP_GRACE_S,
        metavar="S",
        help="--launch: SIGKILL the server's process group this long after SIGTERM",
    )


def launch_plan(args: argparse.Namespace) -> LaunchPlan:
    """From `metron capacity --launch ...`; ValueError, naming the flag, before anything starts."""
    if args.target == "vidur":
        raise ValueError("--launch starts servers: use it with --target openai or engine")
    if args.grid and not args.launch:
        raise ValueError("--grid needs --launch")
    grid = Grid.parse(args.grid)
    templates = {"--launch": args.launch, "--launch-health": args.launch_health}
    if args.url:
        templates["--url"] = args.url
    check_templates(grid, templates)
    configuration_names(grid)
    command_argv(args.launch, {name: "0" for name in (*grid.values, *PORT_PLACEHOLDERS)})
    return LaunchPlan(
        command=args.launch,
        grid=grid,
        root=args.output_dir,
        health_url=args.launch_health,
        launch_timeout_s=args.launch_timeout,
        stop_grace_s=args.stop_grace,
    )


def launched_arguments(args: argparse.Namespace, values: Mapping[str, str], directory: Path) -> argparse.Namespace:
    """`args` for a plain capacity search of one launched server into `directory`: the openai
    target at --url (a template; default http://127.0.0.1:{port}), the engine at {rpc_port}."""
    launched = vars(args) | {
        "launch": None,
        "grid": [],
        "url": fill(args.url or LAUNCHED_URL, values),
        "engine": fill(LAUNCHED_ENGINE, values),
        "output_dir": directory,
    }
    return argparse.Namespace(**launched)


def is_launch_file(name: str, grid: Grid) -> bool:
    """Whether an entry of ROOT is one this walk writes (a later walk reuses the searches' runs)."""
    return name in LAUNCH_TABLE_FILES or name in {configuration_name(v) for v in grid.combinations()}


# `search(values, directory)` runs the capacity search against the server the filled-in values
# (grid values, ports) describe and writes it into `directory`.
Search = Callable[[Mapping[str, str], Path], None]


def capacity_per_configuration(plan: LaunchPlan, search: Search) -> list[LaunchRow]:
    rows: list[LaunchRow] = []
    for values in plan.grid.combinations():
        rows.append(_one_configuration(plan, values, search))
        write_launch_table(plan.root, plan.command, plan.grid, rows)
    return rows


def _one_configuration(plan: LaunchPlan, values: dict[str, str], search: Search) -> LaunchRow:
    directory = plan.root / configuration_name(values)
    filled = {**values, **dict(zip(PORT_PLACEHOLDERS, map(str, free_loopback_ports(len(PORT_PLACEHOLDERS))), strict=True))}
    argv = command_argv(plan.command, filled)
    row = LaunchRow(values=values, directory=str(directory), command=argv)
    print(f"{configuration_name(values)}: launching {' '.join(argv)}", flush=True)
    failure: str | None = None
    log_tail: list[str] = []
    try:
        with LaunchedServer(argv, directory / SERVER_LOG, stop_grace_s=plan.stop_grace_s) as server:
            row = msgspec.structs.replace(row, pid=server.pid)
            try:
                server.wait_until_healthy(fill(plan.health_url, filled), plan.launch_timeout_s)
                search(filled, directory / SEARCH_DIRECTORY)
            except TargetError as error:
                code = server.exit_code()
                failure = f"the search failed: {error}" + ("" if code is None else f" (the server exited with status {code})")
                log_tail = server.log_tail()
    except ServerFailedToStart as error:
        failure, log_tail = str(error), error.log_tail
    if failure is not None:
        _print_failure(configuration_name(values), failure, log_tail)
        return msgspec.structs.replace(row, failure=failure, log_tail=log_tail)
    result = json.loads((directory / SEARCH_DIRECTORY / "capacity.json").read_text())["result"]
    return msgspec.structs.replace(row, capacity_qps=result["capacity_qps"], converged=result["converged"])


def _print_failure(name: str, message: str, log_tail: list[str]) -> None:
    print(f"{name}: {message}", file=sys.stderr)
    if log_tail:
        print(f"  the end of its {SERVER_LOG}:", file=sys.stderr)
        for line in log_tail:
            print(f"  | {line}", file=sys.stderr)
    print("  going on with the next configuration", file=sys.stderr, flush=True)
