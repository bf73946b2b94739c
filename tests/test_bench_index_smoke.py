"""The index benchmark runs in smoke mode (tiny folder, no thresholds), so it cannot rot."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_index_benchmark_quick_prints_its_figure(tmp_path):
    out = tmp_path / "index.md"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_index.py"), "--quick",
                           "--only", "10b", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert "| 10b | index throughput resnet18, 24 images" in text and "images/s (plain loop)" in text
    assert " met |" not in text and "MISSED" not in text  # smoke mode never judges
