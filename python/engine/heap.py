"""The engine process's garbage collector: everything alive once the server is up (modules, the
tokenizer, the web stack) is moved out of the collector's sight, so its full collections scan
only what requests create; the youngest generation is collected less often, since every
iteration allocates a few objects per running request."""

import gc

YOUNGEST_GENERATION_THRESHOLD = 20_000


def freeze_startup_heap() -> None:
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNGEST_GENERATION_THRESHOLD, older, oldest)
