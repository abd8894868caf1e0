"""benchmarks/gpu_check.{sh,py} without a GPU: the table's section in docs/benchmarks.md, the
hard time budget and the markdown of a partial run (the measurements need CUDA: test_cuda.py)."""
from __future__ import annotations

import argparse
import subprocess

import pytest

from conftest import REPO, import_script

gpu_check = import_script("benchmarks/gpu_check.py")


def test_docs_have_the_gpu_section_measured_or_saying_unmeasured():
    text = (REPO / "docs" / "benchmarks.md").read_text()
    assert text.count(gpu_check.BEGIN) == 1 and text.count(gpu_check.END) == 1
    section = text.split(gpu_check.BEGIN)[1].split(gpu_check.END)[0]
    assert gpu_check.UNMEASURED in section or "GPU: **" in section


def test_write_section_replaces_only_between_the_markers(tmp_path):
    path = tmp_path / "b.md"
    path.write_text(f"# Speed\n\nCPU table\n\n{gpu_check.BEGIN}\nold\n{gpu_check.END}\n\ntail\n")
    gpu_check.write_section(path, f"{gpu_check.BEGIN}\nnew\n{gpu_check.END}")
    assert path.read_text() == f"# Speed\n\nCPU table\n\n{gpu_check.BEGIN}\nnew\n{gpu_check.END}\n\ntail\n"
    bare = tmp_path / "bare.md"
    bare.write_text("# Speed\n\nCPU table\n")
    gpu_check.write_section(bare, f"{gpu_check.BEGIN}\nnew\n{gpu_check.END}")
    assert bare.read_text().startswith("# Speed\n\nCPU table\n\n## GPU") and gpu_check.END in bare.read_text()


def test_exhausted_budget_skips_every_step_and_still_writes_the_table(tmp_path):
    out = tmp_path / "b.md"
    assert gpu_check.main(["--device", "cpu", "--budget", "0", "--out", str(out), "--copy-to", str(tmp_path / "c")]) == 0
    text = out.read_text()
    assert (tmp_path / "c" / "b.md").read_text() == text
    skipped = [line for line in text.splitlines() if line.startswith("- skipped ")]
    n = len(gpu_check.PAPER_SETTINGS)
    assert len(skipped) == 3 * n + 1  # eager+fused, tensorrt and compile per setting, and training
    for s in gpu_check.PAPER_SETTINGS:
        assert f"| {s.label} | {s.source} | - | - | - | - |" in text


def test_markdown_of_a_partial_run(tmp_path):
    report = gpu_check.Report("NVIDIA Test GPU", suite="37 passed")
    first = gpu_check.PAPER_SETTINGS[0]
    report.speed[first.label] = {"eager": 20.0, "fused": 10.0}
    report.train = [("fp32, NCHW", 8, (1024, 1024), 10.0), ("fp16 AMP (GradScaler) + channels_last", 8, (1024, 1024), 25.0)]
    args = argparse.Namespace(command="bash benchmarks/gpu_check.sh", warmup=10, iters=100, size=None)
    text = gpu_check.markdown(report, args, finished=False)
    assert "GPU: **NVIDIA Test GPU**" in text and "partial" in text and "37 passed" in text
    assert f"| {first.label} | {first.source} | 20.00 (50) | 10.00 (100) | - | - |" in text
    assert "AMP + channels_last over fp32: 2.50x" in text


@pytest.mark.parametrize("script", ["benchmarks/gpu_check.sh"])
def test_shell_script_parses(script):
    assert subprocess.run(["bash", "-n", str(REPO / script)]).returncode == 0
