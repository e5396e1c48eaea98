"""Runs an ASGI app with Hypercorn on Trio, on sockets bound before the model loads (so a port
in use fails at once, naming the port).

Hypercorn closes a connection whose request headers have not all arrived `header_timeout_s`
after it opened or after its previous response (its keep-alive timeout); the API bounds the
body's arrival itself.
"""

import logging
import socket
from functools import partial
from typing import Any, cast

import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app
from starlette.types import ASGIApp

BACKLOG = 1024


def http_config(host: str, port: int, header_timeout_s: float) -> Config:
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("engine.http")
    config.keep_alive_timeout = header_timeout_s
    config.backlog = BACKLOG
    return config


def bind_http(config: Config) -> Sockets:
    """Binds and listens; raises OSError naming the address when it cannot."""
    try:
        sockets = config.create_sockets()
    except OSError as error:
        raise OSError(f"cannot listen on http://{config.bind[0]}: {error.strerror}") from None
    for sock in sockets.insecure_sockets:
        sock.listen(config.backlog)
    return sockets


def bound_port(sockets: Sockets) -> int:
    port: int = sockets.insecure_sockets[0].getsockname()[1]
    return port


async def serve_http(
    app: ASGIApp, config: Config, sockets: Sockets, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    wrapped = wrap_app(cast(Any, app), config.wsgi_max_body_size, "asgi")
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(worker_serve, wrapped, config, sockets=sockets))
        task_status.started()


async def bind_rpc(host: str, port: int) -> list[trio.SocketListener]:
    try:
        return await trio.open_tcp_listeners(port, host=host, backlog=BACKLOG)
    except OSError as error:
        raise OSError(f"cannot listen on tcp://{host}:{port} (RPC): {error.strerror}") from None


def is_loopback(host: str) -> bool:
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        return False
    return all(address.startswith("127.") or address == "::1" for address in addresses)
