"""Errors the engine reports to whoever submitted a request, in either process."""


class EngineFailedError(RuntimeError):
    """The engine cannot serve this request any more (for example a model worker died)."""


class EngineUnavailableError(EngineFailedError):
    """The engine accepts no new requests (it is shutting down); requests it holds go on."""
