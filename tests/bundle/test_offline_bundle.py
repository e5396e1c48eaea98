"""The offline bundle (`scripts/bundle`) installs into a fresh Python 3.12 venv with no index and
its packages work there. Building a bundle takes minutes and PyPI (two release Rust builds and
every dependency's wheel), so the test runs on a bundle made beforehand:

    scripts/bundle --python 3.12 --out /tmp/bundle && SERVEKIT_BUNDLE_DIR=/tmp/bundle pytest tests/bundle

(with or without --engine-only), and is skipped without one. The venv has no PyTorch (its wheel is the GPU host's own), so what
is checked here is everything that runs without it."""

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BUNDLE = os.environ.get("SERVEKIT_BUNDLE_DIR")
pytestmark = pytest.mark.skipif(not BUNDLE, reason="set SERVEKIT_BUNDLE_DIR to a bundle made by scripts/bundle")

WITHOUT_TORCH = """
import engine._scheduler, transformers, pytest
from engine.scheduler import Scheduler, SchedulerConfig
scheduler = Scheduler(SchedulerConfig(token_budget=16, max_num_seqs=4, max_model_len=64, block_size=16, num_blocks=8))
scheduler.add_request(7, prompt_token_ids=list(range(20)), max_new_tokens=2)
batch = scheduler.schedule(0.0)
print([(entry.id, entry.num_tokens) for entry in batch.requests])
"""


def python_312() -> str:
    """pyenv's 3.12 first: its shim on PATH may not run where 3.12 is not pyenv's global version."""
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))
    found = candidates[-1] if candidates else shutil.which("python3.12")
    if found is None:
        pytest.skip("no Python 3.12 here (~/.pyenv/versions or PATH)")
    return found


def test_the_bundle_installs_offline_into_python_312_and_its_packages_run(tmp_path: Path) -> None:
    bundle = Path(str(BUNDLE))
    wheels = sorted(path.name for path in bundle.glob("servekit_*.whl"))
    projects = [name.split("-")[0] for name in wheels]
    engine_only = projects == ["servekit_engine"]  # scripts/bundle --engine-only
    assert engine_only or projects == ["servekit_engine", "servekit_metron", "servekit_vidur"]
    assert all("-cp311-abi3-" in name for name in wheels if "metron" not in name)
    venv = tmp_path / "venv"
    subprocess.run([python_312(), "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    env = {**os.environ, "PYTHON": python, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    installed = subprocess.run([str(bundle / "install.sh")], env=env, capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    assert "install.sh: warning: " in installed.stderr and "has no PyTorch" in installed.stderr
    assert installed.stdout.rstrip().endswith(f"servekit installed for {python}")

    code = WITHOUT_TORCH if engine_only else WITHOUT_TORCH + "import vidur._simulator, metron"
    ran = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.strip() == "[(7, 16)]"  # the token budget's first chunk of the 20-token prompt
    for tool in () if engine_only else ("metron", "vidur"):
        helped = subprocess.run([str(venv / "bin" / tool), "--help"], env=env, capture_output=True, text=True)
        assert helped.returncode == 0 and "usage:" in helped.stdout, helped.stderr[-2000:]
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if version != "3.12":  # this interpreter is another Python: the bundle refuses it
        other = {**env, "PYTHON": sys.executable}
        wrong = subprocess.run([str(bundle / "install.sh")], env=other, capture_output=True, text=True)
        assert wrong.returncode == 1
        assert f"this bundle is for Python 3.12, but {sys.executable} is Python {version}" in wrong.stderr
