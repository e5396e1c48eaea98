"""`metron capacity --launch`: a server started per grid configuration (the scripted server, as its
own process behind `sh`, so each launch is a process group of two), its capacity searched and the
whole group stopped; a server that fails is reported with its log's tail while the walk goes on;
a bad grid or template is refused before anything starts."""

import json
import shlex
import sys
from pathlib import Path

import pytest

from metron.cli import main
from metron.launch import LaunchedServer, ServerFailedToStart, free_loopback_ports
from metron.launch_grid import Grid, configuration_name

SCRIPTED_SERVER = Path(__file__).with_name("scripted_server.py")
SCRIPTS = {
    # Every gap well inside the 50 ms TBT deadline: passes at every rate tried.
    "fast": {"model": "m", "first_s": 0.01, "gap_s": 0.005},
    # Every gap 4x the deadline (D_d; D_p leaves no slack to spend): fails at every rate.
    "slow": {"model": "m", "first_s": 0.01, "gap_s": 0.2},
}


def live_members(group_id: int) -> list[int]:
    """Processes of the group that have not exited (a zombie awaiting its reaper has)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        state, group = fields[0], int(fields[2])
        if group == group_id and state not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members


def launch_command(script_dir: Path) -> str:
    """The server behind a shell that waits for it: stopping only the shell would orphan it."""
    server = f"{shlex.quote(sys.executable)} {shlex.quote(str(SCRIPTED_SERVER))}"
    return f"sh -c '{server} {shlex.quote(str(script_dir))}/{{speed}}.json --port {{port}} & wait $!'"


CAPACITY_ARGS = [
    "--model", "m", "--num-requests", "8", "--output-tokens", "4", "--prompt-tokens", "8",
    "--tbt-deadline", "0.05", "--ttft-deadline", "0.05", "--arrivals", "gamma", "--cv", "0.25",
    "--initial-qps", "8", "--min-qps", "2", "--max-runs", "3", "--launch-timeout", "60", "--stop-grace", "5",
]  # fmt: skip


def test_a_grid_of_launched_servers_gets_a_capacity_each_and_a_failed_one_is_reported(  # type: ignore[no-untyped-def]
    tmp_path: Path, capsys: pytest.CaptureFixture[str], read_html_page
) -> None:
    for name, script in SCRIPTS.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(script))
    (tmp_path / "broken.json").write_text('{"model": "m", "first_s": ')
    out = tmp_path / "out"
    command = launch_command(tmp_path)
    code = main(["capacity", "--launch", command, "--grid", "speed=fast,broken,slow", *CAPACITY_ARGS,
                 "--output-dir", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 3, err  # one configuration failed; the table is written all the same

    table = json.loads((out / "launch.json").read_text())
    assert table["launch"] == command and table["grid"] == {"speed": ["fast", "broken", "slow"]}
    rows = {row["values"]["speed"]: row for row in table["configurations"]}
    assert list(rows) == ["fast", "broken", "slow"]

    # The broken server exited at once; its log's tail says why, here and in the table.
    broken = rows["broken"]
    assert broken["capacity_qps"] is None and "exited with status 1 before it was healthy" in broken["failure"]
    assert any("JSONDecodeError" in line for line in broken["log_tail"]) and len(broken["log_tail"]) <= 20
    assert "speed=broken: the server exited with status 1" in err and "JSONDecodeError" in err
    assert (out / "speed=broken" / "server.log").is_file()

    # The walk went on: each working server has its own search, every run kept, and their
    # capacities differ.
    for name in ("fast", "slow"):
        row = rows[name]
        assert row["failure"] is None and Path(row["directory"]) == out / f"speed={name}"
        search = json.loads((out / f"speed={name}" / "capacity" / "capacity.json").read_text())["result"]
        assert search["capacity_qps"] == row["capacity_qps"]
        assert all((Path(step["directory"]) / "requests.jsonl").is_file() for step in search["steps"])
        assert row["command"][:2] == ["sh", "-c"] and "{port}" not in row["command"][2]
    assert rows["fast"]["capacity_qps"] > rows["slow"]["capacity_qps"] == 0.0
    report = (out / "launch.md").read_text()
    assert f"| fast | **{rows['fast']['capacity_qps']:.4g}**" in report and "[speed=fast](speed=fast) |" in report
    assert "| slow | **0**" in report and "| broken | failed: the server exited" in report
    assert "JSONDecodeError" in report
    page, urls = read_html_page(out / "launch.html")
    assert page[0] == ["speed", "capacity (QPS)", "directory"]
    found = {
        name: f"{rows[name]['capacity_qps']:.4g}" + ("" if rows[name]["converged"] else " (not converged)")
        for name in ("fast", "slow")
    }
    assert page[1:] == [
        ["fast", found["fast"], "speed=fast"],
        ["broken", f"failed: {broken['failure']}", "speed=broken"],
        ["slow", found["slow"], "speed=slow"],
    ]
    assert found["slow"].startswith("0")
    assert urls == ["speed=fast", "speed=broken", "speed=slow"]
    assert "JSONDecodeError" in (out / "launch.html").read_text()

    # Nothing launched outlives the walk: neither the shells nor the servers they started.
    assert all(row["pid"] for row in rows.values())
    assert {row["pid"]: live_members(row["pid"]) for row in rows.values()} == {row["pid"]: [] for row in rows.values()}


@pytest.mark.parametrize(
    ("grid", "command", "message"),
    [
        (["policy"], "touch {marker}/{policy}", "--grid 'policy' needs the form KEY=VALUE1,VALUE2"),
        (["policy="], "touch {marker}/{policy}", "--grid 'policy=' has an empty value"),
        (["policy=a,,b"], "touch {marker}/{policy}", "--grid 'policy=a,,b' has an empty value"),
        (["policy=a", "policy=b"], "touch {marker}/{policy}", "--grid key 'policy' is given twice"),
        (["port=1,2"], "touch {marker}/{port}", "{port} is metron's own placeholder"),
        (["policy=a,b"], "touch {marker}/{policy}-{chunk}", "--launch uses {chunk}, which no --grid key"),
        (["policy=a,b", "chunk=1"], "touch {marker}/{policy}", "--grid key 'chunk' is not used by --launch"),
        (["policy=a,b"], "touch {marker}/{}", "placeholder {} must be a plain name"),
    ],
)
def test_a_bad_grid_or_template_is_refused_before_anything_launches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], grid: list[str], command: str, message: str
) -> None:
    marker = tmp_path / "launched"
    marker.mkdir()
    command = command.replace("{marker}", str(marker))
    grid_args = [arg for spec in grid for arg in ("--grid", spec)]
    out = tmp_path / "out"
    assert main(["capacity", "--launch", command, *grid_args, *CAPACITY_ARGS, "--output-dir", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert list(marker.iterdir()) == [] and not out.exists()


def test_grid_without_launch_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["capacity", "--url", "http://127.0.0.1:9", "--grid", "a=1", *CAPACITY_ARGS, "--output-dir", str(tmp_path)]
    assert main(args) == 2
    assert "--grid needs --launch" in capsys.readouterr().err


def test_combinations_are_in_a_stable_order_with_one_directory_each() -> None:
    grid = Grid.parse(["policy=sarathi,vllm", "chunk=256,512"])
    assert [configuration_name(values) for values in grid.combinations()] == [
        "policy=sarathi,chunk=256",
        "policy=sarathi,chunk=512",
        "policy=vllm,chunk=256",
        "policy=vllm,chunk=512",
    ]
    assert configuration_name({"model": "/models/llama 3"}) == "model=_models_llama_3"


def test_a_group_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    with LaunchedServer(["sh", "-c", "trap '' TERM; sleep 60 & wait"], tmp_path / "log", stop_grace_s=0.5) as server:
        group = server.pid
        assert live_members(group)
    assert live_members(group) == []


def test_a_server_that_never_answers_its_health_url_times_out(tmp_path: Path) -> None:
    (port,) = free_loopback_ports(1)
    with LaunchedServer(["sh", "-c", "echo starting; sleep 60"], tmp_path / "log", stop_grace_s=5) as server:
        with pytest.raises(ServerFailedToStart, match=f"did not answer http://127.0.0.1:{port}/health with 200 within 0.5 s") as failed:
            server.wait_until_healthy(f"http://127.0.0.1:{port}/health", timeout_s=0.5)
        assert failed.value.log_tail == ["starting"]
    assert live_members(server.pid) == []
