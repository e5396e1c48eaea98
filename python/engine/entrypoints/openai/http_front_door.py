"""What every HTTP request passes through before the API: the API key check (`Authorization:
Bearer KEY`, as vLLM's `--api-key`; health, metrics and version stay open), a count of the
requests whose response has not been sent in full yet (a drain waits for it to reach zero), and
one access-log line when the response has ended: client, method, path, status and seconds."""

import hmac
import logging
import time
from typing import Any

import msgspec
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("engine.access")

OPEN_PATHS = frozenset({"/health", "/metrics", "/version", "/ping"})


class HttpFrontDoor:
    def __init__(self, app: ASGIApp, *, api_key: str | None, log_access: bool = True):
        self._app = app
        self._expected = None if api_key is None else f"Bearer {api_key}".encode()
        self._log_access = log_access
        self.num_active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.num_active += 1
        try:
            if self._authorized(scope):
                await self._app(scope, receive, send_and_note)
            else:
                await _unauthorized(send_and_note)
        finally:
            self.num_active -= 1
            if self._log_access:
                client = scope.get("client") or ("-", 0)
                access_log.info(
                    '%s:%s "%s %s" %d %.3fs', client[0], client[1], scope["method"], scope["path"], status,
                    time.perf_counter() - started,
                )

    def _authorized(self, scope: Scope) -> bool:
        if self._expected is None or scope["path"] in OPEN_PATHS:
            return True
        given = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
        return hmac.compare_digest(given, self._expected)


async def _unauthorized(send: Send) -> None:
    body: dict[str, Any] = {
        "error": {"message": "invalid or missing API key", "type": "invalid_request_error", "param": None,
                  "code": "invalid_api_key"}
    }
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
    await send({"type": "http.response.body", "body": msgspec.json.encode(body)})
