"""Searchable RegSeg (RegSeg Sec 3.4): exact at integer rates, trainable rates, field of view, the
rounding rule and the Eq. 3 warnings."""
from __future__ import annotations

import json
import warnings

import pytest
import torch

import atrous
from atrous.models.regseg import EXP48_DILATIONS
from atrous.models.regseg_search import SEARCH_START
from atrous.search import (DilationBoundWarning, RateLog, bound_violations, describe, round_block,
                           round_dilations, warn_bound)

SMALL = dict(widths=(16, 32, 32, 32), stem_width=16, group_width=8, decoder_widths=(16, 8, 16))


def test_integer_start_equals_regseg_exactly():
    start = [[1, 1]] + [list(d) for d in EXP48_DILATIONS[1:]]
    torch.manual_seed(0)
    search = atrous.create_model("regseg_search", num_classes=5, **SMALL)
    torch.manual_seed(0)
    plain = atrous.create_model("regseg", num_classes=5, dilations=start, **SMALL)
    x = torch.randn(2, 3, 64, 80)
    for mode in (True, False):
        search.train(mode), plain.train(mode)
        assert torch.equal(search(x), plain(x))
    assert sum(p.numel() for p in search.parameters()) == sum(p.numel() for p in plain.parameters()) + 26


def test_rates_are_trainable_and_reported_by_fov():
    rates = [(1.0, 1.5), (1.2, 3.7)]
    model = atrous.create_model("regseg_search", num_classes=3, dilations=rates, **SMALL)
    assert model.rates() == [pytest.approx(r) for r in rates]
    model(torch.randn(1, 3, 64, 64)).square().mean().backward()
    grads = [p.grad for p in model.rate_parameters()]
    assert len(grads) == 4 and all(g is not None and torch.isfinite(g) for g in grads)
    assert any(g.abs() > 0 for g in grads)
    steps = {row.name: row for row in atrous.analysis.fov_table(model)}
    assert steps["stage16.2"].dilations == pytest.approx((1.2, 3.7))
    # FoV by hand (Eq. 1, k += 2 r s): stem 3; 1/4 block at s=2: +4; 1/8 blocks at s=4, 8, 8: +8, +16,
    # +16; stride-2 block at s=8: +16 (= 63); then the searched blocks at s=16: +32 * max(r).
    assert atrous.field_of_view(model) == pytest.approx(63 + 32 * 1.5 + 32 * 3.7)


def test_default_start_is_exp48_with_two_branches():
    model = atrous.create_model("regseg_search")
    assert len(model.rate_parameters()) == 26
    assert atrous.field_of_view(model) == atrous.field_of_view(atrous.create_model("regseg"))
    assert SEARCH_START[0] == (1.0, 1.0) and SEARCH_START[-1] == (1.0, 14.0)


@pytest.mark.parametrize("rates,expected", [
    ((1.0, 1.0), (1, 1)), ((1.3, 2.2), (1, 3)), ((2.2, 1.3), (1, 3)), ((3.9, 4.1), (3, 5)),
    ((1.0, 14.0), (1, 14)), ((0.4, 6.5), (1, 7)), ((2.5,), (3,)), ((1.2, 2.5, 3.49, 7.1), (1, 3, 3, 8))])
def test_rounding_rule(rates, expected):
    assert round_block(rates) == expected


def test_round_dilations_reproduces_table2_form_and_rejects_bad_rates():
    assert round_dilations([(1.0, 1.0), (1.7, 2.3)]) == [(1, 1), (1, 3)]
    with pytest.raises(ValueError, match="rates"):
        round_block([])
    with pytest.raises(ValueError, match="rates"):
        round_block([1.0, float("nan")])
    assert describe([(1, 1), (1.5, 2.25)]) == "(1,1)+(1.500,2.250)"


def test_bound_warning_names_the_block():
    ok = atrous.create_model("regseg_search", dilations=[(1.0, 1.0), (1.0, 2.0)], **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_bound(ok, "start") == []
    # at the first stride-1 block at 1/16, k/s = 63/16 ~ 3.94
    bad = atrous.create_model("regseg_search", dilations=[(1.0, 4.5), (1.0, 2.0)], **SMALL)
    assert len(bound_violations(bad)) == 1
    with pytest.warns(DilationBoundWarning, match=r"found: stage16\.1: dilation 4\.5 > k/s"):
        warn_bound(bad, "found")


def test_rate_log_writes_json_and_plot_and_trims_on_resume(tmp_path):
    log = RateLog(tmp_path, ["stage16.1", "stage16.2"])
    for it in range(4):
        log.record(it, it * 10, [(1.0, 2.0 + it / 10), (1.0, 4.0)], 100 + it)
    data = json.loads((tmp_path / "rates.json").read_text())
    assert [e["iter"] for e in data["entries"]] == [0, 10, 20, 30]
    assert data["entries"][2]["rates"] == [[1.0, 2.2], [1.0, 4.0]]
    assert (tmp_path / "rates.png").read_bytes()[:4] == b"\x89PNG"
    resumed = RateLog(tmp_path, ["stage16.1", "stage16.2"], resume_iter=10)
    assert [e["iter"] for e in resumed.entries] == [0, 10]


def test_complexity_of_the_searchable_model():
    """Counted by a real forward (its rates are read as values): at integer rates the MACs are
    RegSeg's; at fractional rates each fractional conv runs its 25 taps instead of 9."""
    size = (64, 96)
    start = atrous.complexity(atrous.create_model("regseg_search", num_classes=3, dilations=[(1.0, 1.0), (1.0, 2.0)],
                                                  **SMALL), size)
    plain = atrous.complexity(atrous.create_model("regseg", num_classes=3, dilations=[(1, 1), (1, 2)], **SMALL), size)
    assert start["macs"] == plain["macs"] and start["params"] == plain["params"] + 4  # + 2 blocks x 2 rates
    frac = atrous.create_model("regseg_search", num_classes=3, dilations=[(1.5, 1.5), (1.5, 2.5)], **SMALL)
    branch_macs = sum(m.weight[0].numel() * m.out_channels for m in frac.modules()
                      if isinstance(m, atrous.nn.FractionalDilatedConv)) * (size[0] // 16) * (size[1] // 16)
    assert atrous.complexity(frac, size)["macs"] - plain["macs"] == branch_macs * 16 // 9
