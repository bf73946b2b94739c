"""CI runs the benchmarks in smoke mode so they cannot rot (no thresholds: not a timed test)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmarks_quick_prints_the_table_and_writes_results(tmp_path):
    out = tmp_path / "results.md"
    results = ROOT / "benchmarks" / "RESULTS.md"
    before = results.read_bytes() if results.exists() else None
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    # every figure at tiny sizes: ~140 s on 2 quiet cores (start-up rounds, the window, the why and circuit figures)
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=480, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    numbers = {line.split("|")[1].strip() for line in table[2:]}
    assert table[0].startswith("| # | figure |")
    assert {"1", "1b", "2a", "2b", "3", "4", "5", "6"} <= numbers, done.stdout
    assert {"7", "8", "9a", "9b", "9c", "9d", "12a"} <= numbers, done.stdout  # lanes, model switches, start-up, live
    assert {"13", "13b", "14"} <= numbers, done.stdout  # every module, its memory, graph stalls
    assert any(n.startswith("11") for n in numbers), done.stdout  # optvis vs Lucent (11a/11b), or why not
    text = out.read_text()
    assert "featurescope benchmark results" in text and "torch " in text and "CPU: " in text
    assert "capture cost resnet18" in text and "capture_batch cost resnet18 16x" in text and "layer switch vgg16" in text
    assert "forward passes while switching" in text and "while switching 72 times over 19 layers: 0" in text
    # smoke mode never judges figures and never touches the published results
    assert " met |" not in text and "MISSED" not in text
    assert (results.read_bytes() if results.exists() else None) == before
    refused = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(results)],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert refused.returncode == 2 and "never overwrites" in refused.stderr
