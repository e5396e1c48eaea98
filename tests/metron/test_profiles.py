"""`metron benchmark --profile ...` against the scripted server: each profile applies the load it
names (as the server saw it), writes a run directory per level and the sweep summary; `--max-seconds`
cuts a run short and says so; bad profile arguments exit 2 naming the flag."""

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from metron.cli import main
from metron.run_format import read_run

FAST = {"model": "m", "first_s": 0.02, "gap_s": 0.01, "usage": "continuous"}
SLOW_FIRST_TOKEN = {**FAST, "first_s": 0.3}


def benchmark(server, out: Path, *args: str) -> int:  # type: ignore[no-untyped-def]
    common = ["benchmark", "--url", server.url, "--model", "m", "--prompt-tokens", "8", "--output-tokens", "3"]
    return main([*common, "--no-progress", "--output-dir", str(out), *args])


def server_log(server) -> list[dict]:  # type: ignore[no-untyped-def]
    """Every finished request, in the order the server finished them."""
    return [json.loads(line) for line in server.log_path.read_text().splitlines()]


def peak_in_flight(entries: list[dict]) -> int:
    """The most requests the server was streaming at once (from receipt to its last event)."""
    edges = sorted([(e["received"], 1) for e in entries] + [(e["sent"][-1], -1) for e in entries])
    return int(max(np.cumsum([step for _, step in edges])))


def levels(out: Path) -> list[dict]:
    return json.loads((out / "sweep.json").read_text())["levels"]


def test_synchronous_never_has_two_requests_in_flight(scripted_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = scripted_server(FAST)
    assert benchmark(server, tmp_path / "out", "--profile", "synchronous", "--num-requests", "4") == 0
    entries = server_log(server)
    assert len(entries) == 4 and peak_in_flight(entries) == 1
    assert [level["name"] for level in levels(tmp_path / "out")] == ["synchronous"]
    assert read_run(tmp_path / "out" / "synchronous").metrics["num_finished"] == 4


def test_concurrent_reaches_each_level_and_never_exceeds_it(scripted_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = scripted_server(SLOW_FIRST_TOKEN)
    out = tmp_path / "out"
    assert benchmark(server, out, "--profile", "concurrent", "--concurrency", "2,3", "--num-requests", "6") == 0
    entries = server_log(server)
    assert len(entries) == 12
    assert [peak_in_flight(entries[:6]), peak_in_flight(entries[6:])] == [2, 3]
    summary = levels(out)
    assert [(level["name"], level["concurrency"]) for level in summary] == [("concurrent-2", 2), ("concurrent-3", 3)]
    assert all((out / level["directory"] / "report.md").is_file() for level in summary)
    assert "closed loop**: at most 3 requests in flight" in (out / "concurrent-3" / "report.md").read_text()


def test_throughput_sends_everything_at_once(scripted_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = scripted_server(SLOW_FIRST_TOKEN)
    assert benchmark(server, tmp_path / "out", "--profile", "throughput", "--num-requests", "4") == 0
    assert peak_in_flight(server_log(server)) == 4
    assert read_run(tmp_path / "out" / "throughput").config["open_loop"] is True


def test_constant_sends_at_even_intervals(scripted_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = scripted_server(FAST)
    assert benchmark(server, tmp_path / "out", "--profile", "constant", "--rate", "10", "--num-requests", "6") == 0
    gaps = np.diff(sorted(entry["received"] for entry in server_log(server)))
    assert len(gaps) == 5
    assert gaps.min() > 0.05 and 0.07 < np.median(gaps) < 0.15  # 0.1 s apart, loosely: the machine is busy
    run = read_run(tmp_path / "out" / "rate-10")
    assert run.config["run"]["workload"]["arrivals"]["kind"] == "constant"  # type: ignore[index]


def test_sweep_runs_synchronous_throughput_then_rates_between(scripted_server, read_html_page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = scripted_server(FAST)
    out = tmp_path / "out"
    assert benchmark(server, out, "--profile", "sweep", "--sweep-rates", "2", "--num-requests", "4") == 0
    summary = levels(out)
    assert [level["profile"] for level in summary] == ["synchronous", "throughput", "constant", "constant"]
    low, high = sorted(level["request_throughput_per_s"] for level in summary[:2])
    rates = [level["rate"] for level in summary[2:]]
    assert low < rates[0] < rates[1] < high
    assert [level["name"] for level in summary[2:]] == [f"rate-{rate:.4g}" for rate in rates]
    keys = {"name", "profile", "rate", "concurrency", "directory", "request_throughput_per_s",
            "output_token_throughput_per_s", "latencies", "cut_at_max_seconds", "num_finished"}
    for level in summary:
        assert keys <= level.keys() and (out / level["directory"] / "summary.json").is_file()
        assert set(level["latencies"]) == {f"{name}.{stat}" for name in ("ttft_s", "tbt_s", "normalized_latency_s")
                                           for stat in ("p50", "p99")}
        assert level["latencies"]["ttft_s.p50"] > 0 and level["num_finished"] == 4
    table = (out / "sweep.md").read_text()
    assert all(f"[{level['name']}]({level['directory']}/report.md)" in table for level in summary)
    assert (out / "sweep_latencies.png").stat().st_size > 0 and (out / "sweep_throughput.png").stat().st_size > 0
    assert sorted(entry.name for entry in out.iterdir() if entry.is_dir()) == sorted(l["name"] for l in summary)

    # report.html: the same table, each figure as sweep.json has it (4 significant digits), and
    # both plots inside the page; it loads nothing and links only to the levels' reports.
    rows, urls = read_html_page(out / "report.html")
    assert rows[0][:6] == ["level", "rate (req/s)", "concurrency", "finished", "req/s", "output tokens/s"]
    latency_keys = [f"{name}.{stat}" for name in ("ttft_s", "tbt_s", "normalized_latency_s") for stat in ("p50", "p99")]
    expected = [
        [level["name"], "n/a" if level["rate"] is None else f"{level['rate']:.4g}",
         "n/a" if level["concurrency"] is None else str(level["concurrency"]), str(level["num_finished"]),
         f"{level['request_throughput_per_s']:.4g}", f"{level['output_token_throughput_per_s']:.4g}",
         *(f"{level['latencies'][key]:.4g}" for key in latency_keys)]
        for level in summary
    ]  # fmt: skip
    assert rows[1:] == expected
    plots = [(out / name).read_bytes() for name in ("sweep_latencies.png", "sweep_throughput.png")]
    assert [base64.b64decode(url.partition(",")[2]) for url in urls if url.startswith("data:image/png;base64,")] == plots
    assert [url for url in urls if not url.startswith("data:")] == [f"{level['directory']}/report.md" for level in summary]


def test_max_seconds_cuts_a_long_run_and_marks_it(scripted_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = scripted_server({**FAST, "gap_s": 0.2})  # each request streams for 10 s
    out = tmp_path / "run"
    args = ["run", "--url", server.url, "--model", "m", "--arrivals", "constant", "--rate", "4", "--num-requests", "20"]
    args += ["--output-tokens", "50", "--prompt-tokens", "8", "--max-seconds", "1.5", "--no-progress"]
    assert main([*args, "--output-dir", str(out)]) == 0
    run = read_run(out)
    assert run.config["cut_at_max_seconds"] is True and run.config["interrupted"] is False
    assert 0 < len(run.records) < 20 and all(r.outcome == "interrupted" for r in run.records)
    assert any(r.output_tokens > 0 for r in run.records)  # what arrived before the cut is kept
    assert "cut at --max-seconds 1.5" in (out / "report.md").read_text()

    profile = tmp_path / "profile"
    args = ["--profile", "throughput", "--num-requests", "3", "--output-tokens", "50", "--max-seconds", "1"]
    assert benchmark(server, profile, *args) == 0
    assert [level["cut_at_max_seconds"] for level in levels(profile)] == [True]
    assert "(cut at --max-seconds)" in (profile / "sweep.md").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--profile", "concurrent"], "profile concurrent needs at least one level (--concurrency"),
        (["--profile", "concurrent", "--concurrency", "0"], "at least 1 (--concurrency)"),
        (["--profile", "concurrent", "--concurrency", "2,x"], "--concurrency must be comma-separated integers"),
        (["--profile", "synchronous", "--concurrency", "2"], "--concurrency is for profile concurrent"),
        (["--profile", "sweep", "--sweep-rates", "0"], "--sweep-rates must be at least 1"),
        (["--profile", "constant", "--rate", "0"], "profile constant needs a positive --rate"),
        (["--profile", "throughput", "--max-concurrency", "2"], "--max-concurrency does not go with --profile"),
        (["--profile", "throughput", "--max-seconds", "0"], "max_seconds must be a positive number"),
    ],
)
def test_bad_profile_arguments_exit_2_naming_the_flag(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["benchmark", "--url", "http://127.0.0.1:9", "--model", "m", "--output-dir", str(out), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
