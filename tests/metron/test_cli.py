"""The `metron` command: bad arguments and unreachable targets fail clearly, a run writes the run
directory and its report, Ctrl-C still writes what was measured, report and compare work on runs."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from metron.cli import main
from metron.fluidity import min_tbt_deadline
from metron.run_format import read_run

FAST = {"model": "m", "first_s": 0.05, "gap_s": 0.01, "usage": "continuous"}


def metron(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metron.cli", *args], capture_output=True, text=True, timeout=120, check=False
    )


def metron_in_the_background(*args: str) -> subprocess.Popen[str]:
    """For tests that interrupt it: its output captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "metron.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_until_running(process: subprocess.Popen[str], timeout_s: float = 60.0) -> None:
    """Until the process has a socket open (its event loop has started: imports take seconds on a
    loaded machine, and a Ctrl-C during them is not what these tests are about)."""
    deadline = time.monotonic() + timeout_s
    fds = Path(f"/proc/{process.pid}/fd")
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError):  # an fd closed while we looked
            if any(os.readlink(fd).startswith("socket:") for fd in fds.iterdir()):
                return
        time.sleep(0.05)
    raise AssertionError("metron did not start")


def test_bad_arguments_exit_2_naming_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "--url", "http://127.0.0.1:9"])
    assert exited.value.code == 2
    assert "the following arguments are required: --output-dir" in capsys.readouterr().err
    assert main(["run", "--url", "http://127.0.0.1:9", "--output-dir", str(tmp_path / "out")]) == 2
    assert "the openai target needs --url and --model" in capsys.readouterr().err

    common = ["run", "--model", "m", "--output-dir", str(tmp_path / "out")]
    cases = [
        (["--url", "127.0.0.1:8000"], "the target URL must start with http:// or https://"),
        (["--url", "http://127.0.0.1:9", "--rate", "0"], "arrival rate must be a positive number"),
        (["--url", "http://127.0.0.1:9", "--arrivals", "gamma", "--cv", "-1"], "positive coefficient of variation"),
        (["--url", "http://127.0.0.1:9", "--tbt-deadline", "0"], "TBT deadline (tbt_s) must be a positive"),
        (["--url", "http://127.0.0.1:9", "--extra-body", "[1]"], "--extra-body must be a JSON object"),
        (["--url", "http://127.0.0.1:9", "--tokenizer", str(tmp_path / "none.json")], "does not exist"),
        (["--url", "http://127.0.0.1:9", "--lengths", "trace"], "trace lengths need trace_path"),
        (["--target", "engine", "--engine", "localhost"], "the engine address must be HOST:PORT"),
    ]
    for extra, message in cases:
        assert main([*common, *extra]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_unreachable_target_exits_3_with_a_clear_error(tmp_path: Path) -> None:
    result = metron("run", "--url", "http://127.0.0.1:9", "--model", "m", "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 3
    assert "metron: error: cannot reach http://127.0.0.1:9/v1" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_wrong_model_name_is_refused_before_any_load(scripted_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = scripted_server(FAST)
    result = metron("run", "--url", server.url, "--model", "other", "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 3 and "model 'other' is not served" in result.stderr


def test_run_then_report_and_compare(scripted_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = scripted_server(FAST)
    runs = []
    for name, rate in (("slow", "5"), ("fast", "20")):
        out = tmp_path / name
        args = ["--url", server.url, "--model", "m", "--num-requests", "20", "--rate", rate, "--output-tokens", "5"]
        result = metron("run", *args, "--prompt-tokens", "30", "--warmup-requests", "2", "--output-dir", str(out))
        assert result.returncode == 0, result.stderr
        assert "20 requests: 20 finished" in result.stdout
        runs.append(out)
    run = read_run(runs[0])
    assert len(run.records) == 22 and sum(r.warmup for r in run.records) == 2
    assert run.metrics["num_requests"] == 20 and run.config["open_loop"] is True
    for name in ("report.md", "latency_cdfs.png", "fluidity.png", "tokens_over_time.png", "summary.csv"):
        assert (runs[0] / name).is_file()
    assert "fluid token generation rate" in (runs[0] / "report.md").read_text()

    (runs[0] / "report.md").unlink()
    assert metron("report", str(runs[0])).returncode == 0 and (runs[0] / "report.md").is_file()
    compared = metron("compare", str(runs[0]), str(runs[1]), "--output-dir", str(tmp_path / "cmp"))
    assert compared.returncode == 0
    assert "| ttft_s.p50 |" in compared.stdout and (tmp_path / "cmp" / "comparison_cdfs.png").is_file()
    assert metron("report", str(tmp_path)).returncode == 2


def test_ctrl_c_writes_what_was_measured(scripted_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = scripted_server({"model": "m", "first_s": 0.05, "gap_s": 0.2, "usage": "continuous"})
    out = tmp_path / "out"
    process = metron_in_the_background(
        *["run", "--url", server.url, "--model", "m", "--num-requests", "50", "--rate", "10"],
        *["--output-tokens", "50", "--output-dir", str(out), "--no-progress"],
    )
    wait_until_running(process)
    time.sleep(3.0)  # some of the 5 s of arrivals; every stream lasts 10 s
    os.kill(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    run = read_run(out)
    assert run.config["interrupted"] is True
    interrupted = [r for r in run.records if r.outcome == "interrupted"]
    # A request sent half a second before the last one has its first token (due 0.05 s after).
    last_sent = max(r.arrival_s for r in run.records)
    settled = [r for r in interrupted if r.arrival_s < last_sent - 0.5]
    assert settled and all(r.output_tokens > 0 for r in settled)
    assert 0 < len(run.records) < 50
    assert json.loads((out / "summary.json").read_text())["metrics"]["num_interrupted"] == len(interrupted)


def test_an_output_directory_that_holds_files_is_refused_without_overwrite(scripted_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = scripted_server(FAST)
    out = tmp_path / "out"
    args = ["run", "--url", server.url, "--model", "m", "--output-tokens", "3", "--output-dir", str(out)]
    assert metron(*args, "--num-requests", "3").returncode == 0
    again = metron(*args, "--num-requests", "4")
    assert again.returncode == 2
    assert f"the output directory {out} already holds fluidity.png, latency_cdfs.png, report.md and more" in again.stderr
    assert len(read_run(out).records) == 3
    assert metron(*args, "--num-requests", "4", "--overwrite").returncode == 0
    assert len(read_run(out).records) == 4
    # A capacity search reuses its own earlier runs, but not a directory holding something else.
    capacity = metron("capacity", "--url", "http://127.0.0.1:9", "--model", "m", "--output-dir", str(out))
    assert capacity.returncode == 2 and "already holds" in capacity.stderr


def test_an_interrupted_run_does_not_pass_its_slo(scripted_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    slow = {"first_s": 0.05, "gap_s": 1.0}
    server = scripted_server({**FAST, "by_request": {f"metron-{i}": slow for i in range(1, 9)}})
    out = tmp_path / "out"
    process = metron_in_the_background(
        *["run", "--url", server.url, "--model", "m", "--num-requests", "9", "--arrivals", "static"],
        *["--output-tokens", "30", "--output-dir", str(out), "--no-progress"],
    )
    deadline = time.monotonic() + 60
    while not server.log() and time.monotonic() < deadline:  # the fast request has finished
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "9 requests: 1 finished" in stdout
    assert "SLO FAIL" in stdout and "num_unmeasured_requests 8 > 0" in stdout
    assert read_run(out).slo["passed"] is False  # type: ignore[index]
    assert "SLO verdict: **FAIL**" in (out / "report.md").read_text()


def test_slo_percentile_and_fluid_miss_rate_flags(scripted_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # 20 requests of 4 gaps each; one request's gaps are 0.2 s: 5% of the gaps, above P90, below P99.
    server = scripted_server({**FAST, "by_request": {"metron-0": {"gap_s": 0.2}}})
    args = ["--url", server.url, "--model", "m", "--num-requests", "20", "--arrivals", "static"]
    args += ["--output-tokens", "5", "--slo", "tbt_ttft", "--p99-tbt", "0.05", "--no-progress"]
    verdicts = {}
    for percentile in ("90", "99"):
        out = tmp_path / f"p{percentile}"
        result = metron("run", *args, "--tbt-percentile", percentile, "--fluid-miss-rate", "0.5", "--output-dir", str(out))
        assert result.returncode == 0, result.stderr
        verdicts[percentile] = read_run(out).slo
        assert f"tbt_s.p{percentile}" in result.stdout
    assert verdicts["90"]["passed"] is True and verdicts["99"]["passed"] is False  # type: ignore[index]

    run = read_run(tmp_path / "p90")
    slow = next(r for r in run.records if r.id == 0)
    assert slow.min_tbt_deadline_s == min_tbt_deadline(slow.token_times_s, 0.5) != min_tbt_deadline(slow.token_times_s)
    p99 = np.percentile([r.min_tbt_deadline_s for r in run.records], 99)
    assert run.metrics["fluid_token_rate_per_s"] == pytest.approx(1 / p99)
    assert "at most 50% of deadlines missed" in (tmp_path / "p90" / "report.md").read_text()
