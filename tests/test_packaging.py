"""Packaging promises: the engine stays Qt-free and a wheel carries everything it needs."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run_python(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)


def test_engine_imports_no_qt():
    core = REPO / "featurescope" / "core"
    modules = sorted(".".join(p.relative_to(REPO).with_suffix("").parts) for p in core.rglob("*.py"))
    assert len(modules) > 30, modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "import featurescope\n"
        "qt = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6', 'pyqtgraph'))\n"
        "print(qt)\n"
    )
    done = _run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_public_package_import_is_light():
    """``import featurescope`` must not pull in torch: --help and --version stay instant."""
    done = _run_python("import sys, featurescope; print('torch' in sys.modules, featurescope.__version__)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "0.1.0"]


def test_wheel_contains_resources(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 and "No module named" in done.stderr:
        pytest.skip("the build backend is not installed in this environment")
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("featurescope-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "featurescope/resources/samples/chelsea.png" in names
    assert "featurescope/resources/LICENSES.md" in names
    # Every source file of the clone is in the wheel: a new subpackage cannot be left out.
    sources = {"/".join(p.relative_to(REPO).parts) for p in (REPO / "featurescope").rglob("*.py")}
    assert sorted(sources - names) == []
    samples = [n for n in names if n.startswith("featurescope/resources/samples/")]
    assert len(samples) >= 4
