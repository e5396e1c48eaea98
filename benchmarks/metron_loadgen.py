"""How accurately and how much load metron's generator offers from this machine.

Against a minimal streaming SSE server on loopback (this file with --serve, its own process), which
logs when it received each request and when it wrote each token (time.perf_counter(), a clock
both processes share):

1. Send-time error at 100 and 500 requests/s (Poisson arrivals, short streams): when each request
   reached the server minus when the workload scheduled it, and (client side) when metron started
   it. Baseline in the same run: a bare Trio timer loop firing at the same times, no HTTP at all
   (the floor any Trio client has on this machine).
2. Concurrent streams: N streams of 40 tokens/s each, all held open at once; the token-timestamp
   error is metron's stamp minus the server's write time. N doubles from 50 while the P99 error
   stays under 1 ms (halves while it is over), then one bisection step; the figure is the largest N
   with P99 under 1 ms.

The machine's two cores are shared with the server process (and anything else running), so the
figures are what this box gives, not a property of metron alone.

Usage: .venv/bin/python benchmarks/metron_loadgen.py
The last line is one JSON object.
"""

import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import trio

from metron.arrivals import ArrivalConfig
from metron.lengths import LengthConfig
from metron.load_generator import LoadConfig, LoadGenerator
from metron.targets.openai import OpenAIConfig, OpenAITarget
from metron.workload import WorkloadConfig, generate_workload

TOKEN_GAP_S = 0.025
STREAM_TOKENS = 40


# ---------------------------------------------------------------------------- the server process
async def serve(log_path: str) -> None:
    log = open(log_path, "w")  # noqa: SIM115

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while request_line := await reader.readline():
                received = time.perf_counter()
                headers = {}
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if request_line.startswith(b"GET"):
                    data = b'{"data": [{"id": "bench"}]}'
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data))
                    continue
                request = json.loads(body)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                )
                sent = []
                start = time.perf_counter()
                for index in range(request["max_tokens"]):
                    delay = start + request["first_s"] + index * request["gap_s"] - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    payload = (
                        b'data: {"choices": [{"index": 0, "text": " tok"}], "usage": {"completion_tokens": %d}}\n\n'
                    )
                    data = payload % (index + 1)
                    writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                    sent.append(time.perf_counter())
                    await writer.drain()
                done = b"data: [DONE]\n\n"
                writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
                await writer.drain()
                log.write(json.dumps({"id": headers.get("x-request-id"), "received": received, "sent": sent}) + "\n")
                log.flush()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()
    log.close()


# ---------------------------------------------------------------------------- the client side
class Server:
    def __init__(self) -> None:
        self.log_path = Path(tempfile.mkdtemp()) / "server.log"
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(self.log_path)], stdout=subprocess.PIPE, text=True
        )
        self.url = f"http://127.0.0.1:{self.process.stdout.readline().strip()}"  # type: ignore[union-attr]

    def log(self) -> dict[str, dict]:
        time.sleep(0.3)  # the server logs a stream just after its last bytes leave
        return {entry["id"]: entry for entry in map(json.loads, self.log_path.read_text().splitlines())}

    def close(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


def run_load(server: Server, workload: WorkloadConfig, first_s: float, gap_s: float):  # type: ignore[no-untyped-def]
    target = OpenAITarget(
        OpenAIConfig(url=server.url, model="bench", ignore_eos=False, extra_body={"first_s": first_s, "gap_s": gap_s})
    )
    specs = generate_workload(workload)

    async def main():  # type: ignore[no-untyped-def]
        async with target:
            await target.check()
            return await LoadGenerator(target, LoadConfig(start_delay_s=0.5)).run([(s, "x") for s in specs])

    result = trio.run(main)
    failed = [m for m in result.measured if m.error]
    if failed:
        raise RuntimeError(f"{len(failed)} requests failed, e.g. {failed[0].error}")
    return result


def timer_floor(times: np.ndarray) -> np.ndarray:
    """Lateness of a bare Trio loop waking at the same times (the same sleep-then-spin)."""

    async def main() -> list[float]:
        origin = trio.current_time() + 0.5
        late = []
        for at in times:
            due = origin + at
            await trio.sleep_until(due - 0.001)
            while trio.current_time() < due:
                await trio.lowlevel.checkpoint()
            late.append(trio.current_time() - due)
        return late

    return np.array(trio.run(main))


def send_accuracy(server: Server, rate: float, seconds: float) -> dict[str, float]:
    workload = WorkloadConfig(
        num_requests=int(rate * seconds),
        seed=1,
        arrivals=ArrivalConfig(kind="poisson", rate=rate),
        lengths=LengthConfig(kind="fixed", prompt_tokens=8, output_tokens=4),
    )
    result = run_load(server, workload, first_s=0.005, gap_s=0.01)
    log = server.log()
    scheduled = np.array([m.scheduled_arrival_s for m in result.measured])
    client = np.array([m.arrival_s for m in result.measured]) - scheduled
    reached = (
        np.array([log[f"metron-{m.id}"]["received"] - result.origin_perf_counter_s for m in result.measured])
        - scheduled
    )
    floor = timer_floor(scheduled)
    return {
        "rate": rate,
        "requests": len(scheduled),
        "server_p50_ms": float(np.percentile(reached, 50) * 1e3),
        "server_p99_ms": float(np.percentile(reached, 99) * 1e3),
        "client_p99_ms": float(np.percentile(client, 99) * 1e3),
        "timer_floor_p99_ms": float(np.percentile(floor, 99) * 1e3),
    }


def stream_accuracy(server: Server, num_streams: int) -> dict[str, float]:
    """P99 and P50 of (metron's token stamp - the server's write time) with `num_streams` open."""
    workload = WorkloadConfig(
        num_requests=num_streams,
        seed=2,
        arrivals=ArrivalConfig(kind="poisson", rate=num_streams / 1.0),  # all open within ~1 s
        lengths=LengthConfig(kind="fixed", prompt_tokens=8, output_tokens=STREAM_TOKENS),
    )
    result = run_load(server, workload, first_s=0.01, gap_s=TOKEN_GAP_S)
    log = server.log()
    errors = []
    for measured in result.measured:
        sent = np.array(log[f"metron-{measured.id}"]["sent"]) - result.origin_perf_counter_s
        errors.append(np.array(measured.token_times_s) - sent)
    flat = np.concatenate(errors)
    return {
        "streams": num_streams,
        "p50_ms": float(np.percentile(flat, 50) * 1e3),
        "p99_ms": float(np.percentile(flat, 99) * 1e3),
    }


def main() -> None:
    server = Server()
    try:
        print("send-time error (reached the server - scheduled), Poisson arrivals, 4-token streams")
        sends = {}
        for rate, seconds in ((100.0, 10.0), (500.0, 6.0)):
            figures = send_accuracy(server, rate, seconds)
            sends[int(rate)] = figures
            print(
                f"  {rate:5.0f} req/s, {figures['requests']} requests: P50 {figures['server_p50_ms']:.3f} ms, "
                f"P99 {figures['server_p99_ms']:.3f} ms (metron's own dispatch P99 {figures['client_p99_ms']:.3f} ms; "
                f"bare Trio timer floor P99 {figures['timer_floor_p99_ms']:.3f} ms, "
                f"ratio {figures['server_p99_ms'] / max(figures['timer_floor_p99_ms'], 1e-6):.1f}x)"
            )

        print(f"token-timestamp error (metron's stamp - server's write), streams of {1 / TOKEN_GAP_S:.0f} tokens/s")
        results = []

        def measure(streams: int) -> bool:
            figures = stream_accuracy(server, streams)
            results.append(figures)
            print(f"  {streams:5d} streams: P50 {figures['p50_ms']:.3f} ms, P99 {figures['p99_ms']:.3f} ms")
            return figures["p99_ms"] < 1.0

        # Double from 50 while under 1 ms (or halve while over), then one bisection step.
        passing, failing, streams = 0, None, 50
        if measure(streams):
            passing = streams
            while streams < 3200 and measure(streams * 2):
                streams *= 2
                passing = streams
            failing = streams * 2 if streams < 3200 else None
        else:
            failing = streams
            while streams > 1:
                streams //= 2
                if measure(streams):
                    passing = streams
                    break
                failing = streams
        if failing is not None and passing and failing - passing > 1 and measure((passing + failing) // 2):
            passing = (passing + failing) // 2
        print(f"largest number of concurrent streams with P99 token-timestamp error under 1 ms: {passing}")
    finally:
        server.close()
    print(
        json.dumps(
            {
                "send_p99_ms_at_100_rps": round(sends[100]["server_p99_ms"], 3),
                "send_p99_ms_at_500_rps": round(sends[500]["server_p99_ms"], 3),
                "client_dispatch_p99_ms_at_100_rps": round(sends[100]["client_p99_ms"], 3),
                "client_dispatch_p99_ms_at_500_rps": round(sends[500]["client_p99_ms"], 3),
                "timer_floor_p99_ms_at_500_rps": round(sends[500]["timer_floor_p99_ms"], 3),
                "max_streams_p99_token_error_under_1ms": passing,
                "streams_tried": [r["streams"] for r in results],
                "token_error_p99_ms": [round(r["p99_ms"], 3) for r in results],
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        asyncio.run(serve(sys.argv[2]))
    else:
        main()
