"""A real OpenAI-compatible HTTP server for tests: streams SSE tokens at scripted times.

Run: python scripted_server.py SCRIPT_JSON [LOG_PATH] [--port N]. It prints its port on stdout (a
free one unless --port), then serves on 127.0.0.1 until killed; GET /health answers 200 once it
listens. SCRIPT_JSON is the script's JSON text or a file holding it:
    {"model": "scripted",
     "events": [[seconds_after_receipt, num_tokens], ...],   # or, instead of events:
     "first_s": 0.05, "gap_s": 0.01,                           # max_tokens tokens, one per event,
     "gap_per_stream_s": 0.0,                                  # each gap longer by this per open stream
     "prefill_s_per_word": 0.0,                                # added to every event time
     "usage": "continuous" | "final" | "logprobs" | "none",      # usage.prompt_tokens: the prompt's words
     "cached_tokens": null,                                    # or N: usage.prompt_tokens_details.cached_tokens
     "token_text": " tok",                                     # the text of each token
     "status": 200, "error_after_events": null}
Keys of "by_request" (X-Request-Id values) override the script per request. Each event is sent
at its scripted time (asyncio's sleeps wake up to 1 ms late), and the log file gets one JSON line per
request: its id, prompt (a chat request's message contents joined by newlines), its chat
"messages" as received, receipt time and each event's send time (time.perf_counter()).
"""

import argparse
import asyncio
import json
import time
from pathlib import Path


def scripted_events(script: dict, max_tokens: int, prompt_words: int) -> list[tuple[float, int]]:
    offset = script.get("prefill_s_per_word", 0.0) * prompt_words
    if "events" in script:
        return [(offset + at, count) for at, count in script["events"]]
    first, gap = script["first_s"], script["gap_s"]
    return [(offset + first + i * gap, 1) for i in range(max_tokens)]


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def event(payload: object) -> bytes:
    return chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")


async def wait_until(deadline: float) -> None:
    remaining = deadline - time.perf_counter()
    if remaining > 0:
        await asyncio.sleep(remaining)


class Server:
    def __init__(self, script: dict, log_path: str | None) -> None:
        self.script = script
        self.num_streams = 0
        self.log = open(log_path, "a") if log_path else None  # noqa: SIM115

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                received = time.perf_counter()
                method, path, _ = request_line.decode().split(" ", 2)
                headers = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if method == "GET" and path == "/health":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    await writer.drain()
                    continue
                if method == "GET" and path.endswith("/models"):
                    data = json.dumps({"data": [{"id": self.script.get("model", "scripted")}]}).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
                    writer.write(f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
                    await writer.drain()
                    continue
                await self.stream(json.loads(body), headers.get("x-request-id", ""), received, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def stream(self, body: dict, request_id: str, received: float, writer: asyncio.StreamWriter) -> None:
        script = {**self.script, **self.script.get("by_request", {}).get(request_id, {})}
        status = script.get("status", 200)
        if status != 200:
            data = json.dumps({"error": {"message": "scripted failure", "code": status}}).encode()
            writer.write(f"HTTP/1.1 {status} Error\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
            await writer.drain()
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        await writer.drain()
        chat = "messages" in body
        prompt = "\n".join(message["content"] for message in body["messages"]) if chat else body["prompt"]
        num_prompt_tokens = len(prompt.split())
        events = scripted_events(script, body["max_tokens"], num_prompt_tokens)
        self.num_streams += 1
        try:
            sent = await self.send_events(script, events, chat, request_id, received, writer, num_prompt_tokens)
            if self.log:
                entry = {"id": request_id, "prompt": prompt, "received": received, "sent": sent}
                if chat:
                    entry["messages"] = body["messages"]
                self.log.write(json.dumps(entry) + "\n")
                self.log.flush()
        finally:
            self.num_streams -= 1

    async def send_events(self, script, events, chat, request_id, received, writer, num_prompt_tokens) -> list[float]:  # type: ignore[no-untyped-def]
        usage = script.get("usage", "continuous")
        sent, produced, delay = [], 0, 0.0
        for index, (at, count) in enumerate(events):
            if script.get("error_after_events") == index:
                writer.write(event({"error": {"message": "scripted mid-stream failure"}}))
                break
            delay += script.get("gap_per_stream_s", 0.0) * self.num_streams * (index > 0)
            await wait_until(received + at + delay)
            produced += count
            text = script.get("token_text", " tok") * count
            choice: dict = {"index": 0, "finish_reason": None}
            if chat:
                choice["delta"] = {"content": text}
            else:
                choice["text"] = text
            if usage == "logprobs":
                if chat:
                    choice["logprobs"] = {"content": [{"token": " tok", "logprob": 0.0}] * count}
                else:
                    choice["logprobs"] = {"tokens": [" tok"] * count}
            payload: dict = {"id": request_id, "object": "text_completion", "choices": [choice]}
            if usage == "continuous":
                payload["usage"] = {"prompt_tokens": num_prompt_tokens, "completion_tokens": produced,
                                    "total_tokens": produced + num_prompt_tokens}
            writer.write(event(payload))
            await writer.drain()
            sent.append(time.perf_counter())
        else:
            if usage in ("final", "continuous"):
                final = {"prompt_tokens": num_prompt_tokens, "completion_tokens": produced,
                         "total_tokens": produced + num_prompt_tokens}
                if script.get("cached_tokens") is not None:
                    final["prompt_tokens_details"] = {"cached_tokens": script["cached_tokens"]}
                writer.write(event({"id": request_id, "choices": [], "usage": final}))
            writer.write(chunk(b"data: [DONE]\n\n"))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return sent


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("script", help="JSON text, or a file holding it")
    parser.add_argument("log_path", nargs="?")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    script = json.loads(args.script if args.script.lstrip().startswith("{") else Path(args.script).read_text())
    server = Server(script, args.log_path)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", args.port, backlog=1024)
    print(listener.sockets[0].getsockname()[1], flush=True)
    async with listener:
        await listener.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
