"""`python -m engine --attention-backend triton` serves the built-in demo model (under Triton's
interpreter on a CPU) with the same greedy text as `--attention-backend reference`, and neither
PyTorch nor Triton enters the engine process."""

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from support.engine_server import start_server

# Installed as sitecustomize; the first process (the engine's) names itself, and its workers,
# which inherit the variable, import freely.
IMPORT_GUARD = '''
import importlib.abc, os, sys

if os.environ.get("ENGINE_IMPORT_GUARD") == "1":
    guarded = os.environ.setdefault("ENGINE_IMPORT_GUARD_PID", str(os.getpid()))

    class NotInTheEngineProcess(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.partition(".")[0]
            if os.getpid() == int(guarded) and top in ("torch", "triton", "servekit_kernels"):
                raise ImportError(f"{top} imported in the engine process ({name})")
            return None

    sys.meta_path.insert(0, NotInTheEngineProcess())
'''


def test_served_greedy_text_equals_the_reference_backend(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(IMPORT_GUARD)
    env = {  # TRITON_INTERPRET comes from conftest.py when there is no GPU
        **os.environ,
        "ENGINE_IMPORT_GUARD": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
    }
    body = {"model": "demo", "prompt": "The quick brown fox", "max_tokens": 6, "temperature": 0, "ignore_eos": True}

    def served_text(backend: str) -> str:
        server = start_server(None, "--attention-backend", backend, "--num-kv-blocks", "32", name="demo", env=env)
        try:
            reply = httpx.post(f"{server.url}/v1/completions", json=body, timeout=120)
            assert reply.status_code == 200, reply.text
            assert reply.json()["usage"]["completion_tokens"] == 6
            assert any(f"attention {backend})" in line for line in server.log), "".join(server.log)
            assert not any("imported in the engine process" in line for line in server.log), "".join(server.log)
            return str(reply.json()["choices"][0]["text"])
        finally:
            assert server.stop() == 0, "".join(server.log)

    # Side by side: most of the time goes to starting and stopping the engines.
    with ThreadPoolExecutor(2) as pool:
        reference, triton = pool.map(served_text, ["reference", "triton"])
    assert triton == reference != ""
