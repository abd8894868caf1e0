"""CI does not pass by skipping: with ``CI`` set, a test that needs a missing ../shared fails."""
from __future__ import annotations

import pytest

import conftest


def test_missing_shared_skips_outside_ci_and_fails_in_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(conftest, "SHARED", tmp_path / "absent")
    for value in (None, "", "0", "false"):
        if value is None:
            monkeypatch.delenv("CI", raising=False)
        else:
            monkeypatch.setenv("CI", value)
        with pytest.raises(pytest.skip.Exception, match="absent"):
            conftest.reference("regseg")
    for value in ("1", "true"):
        monkeypatch.setenv("CI", value)
        with pytest.raises(pytest.fail.Exception, match="CI .* needs ../shared"):
            conftest.reference("regseg")
        with pytest.raises(pytest.fail.Exception, match="camvid"):
            conftest.shared("data", "camvid")


def test_present_shared_is_returned(monkeypatch, tmp_path):
    (tmp_path / "reference" / "regseg").mkdir(parents=True)
    monkeypatch.setattr(conftest, "SHARED", tmp_path)
    monkeypatch.setenv("CI", "1")
    assert conftest.reference("regseg") == tmp_path / "reference" / "regseg"


def test_ci_run_sets_ci():
    """.ci/run exports CI=1 before the README's test command."""
    text = (conftest.REPO / ".ci" / "run").read_text()
    assert "export CI=1" in text and text.index("export CI=1") < text.index('bash -euo pipefail -c "$cmd"')
