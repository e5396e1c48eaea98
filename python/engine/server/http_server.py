"""Runs an ASGI app with Hypercorn on Trio."""

import logging

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette


async def serve_http(
    app: Starlette, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("engine.http")
    config.keep_alive_timeout = 75
    async with trio.open_nursery() as nursery:
        bound: list[str] = await nursery.start(serve, app, config)
        task_status.started(int(bound[0].rsplit(":", 1)[1]))
