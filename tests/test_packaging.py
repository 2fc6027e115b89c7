"""The release artifacts: build, check, install into a fresh venv, run the demo."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
import venv

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return out


def test_sdist_and_wheel_pass_twine_check(dist: pathlib.Path) -> None:
    pytest.importorskip("twine")
    wheels = list(dist.glob("*.whl"))
    sdists = list(dist.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1
    proc = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, wheels + sdists)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASSED") == 2


def test_the_wheel_installs_and_runs_in_a_fresh_venv(
    dist: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    wheel = next(dist.glob("*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", str(wheel)],
        check=True,
        timeout=600,
        capture_output=True,
    )
    site = subprocess.run(
        [str(py), "-c", "import flinks_async, sys; print(flinks_async.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert str(env_dir) in site.stdout  # the installed copy, not the checkout
    typed = subprocess.run(
        [
            str(py),
            "-c",
            "import flinks_async, pathlib; print((pathlib.Path("
            "flinks_async.__file__).parent / 'py.typed').exists())",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert typed.stdout.strip() == "True"
    demo = subprocess.run(
        [str(env_dir / "bin" / "flinks-async"), "demo", "--logins", "40"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert demo.returncode == 0, demo.stderr
    assert "succeeded" in demo.stdout
    shutil.rmtree(env_dir)
