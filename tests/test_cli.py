"""The command line: help without PyTorch, one-line user errors and warnings, bugs with their
tracebacks, what --resume may change, and progress as log lines when stderr is not a terminal."""
from __future__ import annotations

import argparse
import io
import subprocess
import sys

import pytest
import yaml

from atrous.cli import build_parser, main
from atrous.progress import LogProgress

from conftest import REPO

TINY = {
    "model": {"name": "regseg", "options": {"stem_width": 8, "widths": [8, 16, 16, 16], "depths": [1, 1],
                                            "group_width": 8, "dilations": [[1], [1, 2]],
                                            "decoder_widths": [16, 8, 16]}},
    "data": {"dataset": "toy", "size": 48, "widths": [4, 8], "count": 8, "num_classes": 3},
    "train": {"batch_size": 4, "max_iters": 2, "checkpoint_every": 1, "log_every": 1},
}


@pytest.fixture()
def recipe(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text("# Source: test recipe (RegSeg Sec 3.6 toy data)\n" + yaml.safe_dump(TINY))
    return path


def test_help_and_version_do_not_import_torch():
    code = ("import sys\nfrom atrous.cli import main\n"
            "for argv in (['--help'], ['predict', '--help'], ['train', '--help'], ['--version']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "atrous 0." in proc.stdout and "usage: atrous predict" in proc.stdout


def test_every_argument_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {a.dest}" for name, p in sub.choices.items() for a in p._actions
               if not a.help and not isinstance(a, argparse._HelpAction)]
    assert missing == []


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(recipe, tmp_path, capsys, monkeypatch):
    assert main(["train", str(recipe), "--out", str(tmp_path / "r"), "--set", "train.lr=abc"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.lr: expected a number, got 'abc'" in err
    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    assert main(["eval", str(tmp_path / "bad.safetensors")]) == 2
    assert "bad.safetensors: not a readable safetensors file" in capsys.readouterr().err
    assert main(["train", str(recipe), "--out", str(tmp_path / "i"), "--set",
                 f"model.init={tmp_path / 'bad.safetensors'}"]) == 2
    assert "bad.safetensors" in capsys.readouterr().err
    import atrous.engine.trainer as trainer

    def broken(*args, **kwargs):
        raise TypeError("a bug")

    monkeypatch.setattr(trainer, "start_run", broken)
    with pytest.raises(TypeError, match="a bug"):
        main(["train", str(recipe), "--out", str(tmp_path / "b")])


def test_a_failed_run_leaves_no_config_behind(recipe, tmp_path):
    out = tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(out), "--set", "data.dataset=camvid",
                 "--set", f"data.root={tmp_path / 'nowhere'}"]) == 2
    assert not out.exists()


def test_warnings_print_as_one_line(tmp_path, capsys):
    assert main(["export", "regseg", "--onnx", str(tmp_path / "m.onnx"), "--size", "64x64"]) == 0
    err = capsys.readouterr().err
    assert "warning: regseg: no weights given; using initial (untrained) weights\n" in err
    assert "warnings.warn" not in err and "UserWarning" not in err


def test_resume_names_what_differs(recipe, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(out), "--set", "train.max_iters=1"]) == 0
    assert main(["train", str(recipe), "--out", str(out), "--resume", "--set", "train.batch_size=2",
                 "--set", "train.max_iters=2"]) == 2
    err = capsys.readouterr().err
    assert "train.batch_size: 4 in" in err and "2 now" in err and "train.max_iters" not in err.split(".")[0]
    assert main(["train", str(recipe), "--out", str(out), "--resume", "--set", "train.lr=0.01"]) == 0
    assert "resume: train.lr 0.05 -> 0.01" in capsys.readouterr().out
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["lr"] == 0.01


def test_progress_is_a_log_line_when_not_on_a_terminal():
    stream = io.StringIO()
    bar = LogProgress(total=4, desc="train", interval=0, stream=stream)
    for _ in range(4):
        bar.update()
        bar.set_postfix(loss="0.5")
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5 and "\r" not in stream.getvalue()
    assert lines[-1].startswith("train: 4/4 (100%)") and lines[-1].endswith("loss=0.5")
