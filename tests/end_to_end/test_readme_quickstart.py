"""README's Install and Quick start, run as written: a fresh HOME (no git identity, no git
config), git-theta installed with pip into a venv, every command of both blocks in one shell.
Only the `pip install` lines are done by the test itself (from this checkout, offline)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from testing.install import pip_install_venv

ROOT = Path(__file__).resolve().parents[2]


def _block(readme: str, heading: str) -> str:
    section = readme.split(f"\n## {heading}\n", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert match, f"no bash block under {heading}"
    return match.group(1)


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_install_and_quick_start_work_as_written(tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    install_block = _block(readme, "Install")
    # torch stays optional, and the line that installs it names the CPU wheel's index (PyPI's
    # Linux wheel is the CUDA build with 16 nvidia-* packages).
    torch_line = next(line for line in install_block.splitlines() if "pip install torch" in line)
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch_line
    install = [line for line in install_block.splitlines() if "pip install" not in line]
    script = "set -e\n" + "\n".join(install) + "\n" + _block(readme, "Quick start")
    venv = tmp_path / "venv"
    pip_install_venv(ROOT, venv, tmp_path / "build", system_site=True)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GIT_", "MAN")) and k not in ("HOME", "XDG_CONFIG_HOME", "PAGER")
    }
    env.update(
        HOME=str(home),
        PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}",
        GIT_CONFIG_NOSYSTEM="1",
        MANWIDTH="80",
    )
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True)
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    assert "GIT-THETA(1)" in out
    assert "Traceback" not in err
    assert "model.safetensors: 1 modified, 1 unchanged" in out
    assert re.search(
        r"\n  parameter\tdtype\tshape\tbytes\tupdate\tstored\n  b\tF32\t512\t2048\tdense\t\d+\n",
        out,
    )
    repo = work / "my-model"
    log = subprocess.run(
        ["git", "log", "--format=%s"], cwd=repo, env=env, capture_output=True, check=True
    )
    assert log.stdout.decode().split() == ["fine-tuned", "base", "model"]
    from safetensors.numpy import load_file

    base = load_file(repo / "model.safetensors")
    assert float(base["b"].max()) == 0.0  # the base model is back
