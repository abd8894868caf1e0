"""``atrous search`` end to end on a tiny toy problem: two iterations of search, the rates in their
own optimizer group, the logs, resume, and a found.yaml that ``atrous train`` accepts."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from atrous.cli import main
from atrous.engine import load_config, train
from atrous.search import load_search_config

pytestmark = pytest.mark.filterwarnings("ignore::atrous.search.DilationBoundWarning")

TINY = ["data.size=[64,32]", "data.count=4", "data.widths=[4,8]", "train.batch_size=2",
        "train.max_iters=2", "train.warmup_iters=0", "train.checkpoint_every=1", "train.log_every=1",
        "eval.split=val", "search.lr=5.0"]
SLIM = "model.options={dilations: [[1, 1], [1, 2]], stem_width: 8, widths: [8, 16, 16, 16], " \
       "depths: [1, 1], group_width: 8, decoder_widths: [8, 8, 8]}"


def test_search_recipe_loads_with_its_own_section():
    config, search = load_search_config("search_toy", ["search.lr=0.2", "train.max_iters=3"])
    assert search["lr"] == 0.2 and search["weight_decay"] == 0.0 and search["retrain_model"] == "regseg"
    assert config["train"]["max_iters"] == 3 and config["model"]["name"] == "regseg_search"
    assert "search" not in config
    with pytest.raises(KeyError, match="search.lrr"):
        load_search_config("search_toy", ["search.lrr=1"])


def test_two_iteration_search_writes_a_recipe_that_trains(tmp_path, capsys):
    out = tmp_path / "search"
    assert main(["search", "search_toy", "--out", str(out), *sum((["--set", s] for s in TINY + [SLIM]), [])]) == 0
    printed = capsys.readouterr().out
    assert "field of view: start" in printed and "found (rounded)" in printed

    rates = json.loads((out / "rates.json").read_text())
    assert rates["blocks"] == ["stage16.1", "stage16.2"]
    assert [e["iter"] for e in rates["entries"]] == [0, 2]  # start, then each epoch (2 iterations)
    assert rates["entries"][0]["rates"] == [[1.0, 1.0], [1.0, 2.0]]
    assert rates["entries"][-1]["rates"] != rates["entries"][0]["rates"]  # the rates trained
    assert (out / "rates.png").is_file()

    # the optimizer gave the rates their own group: scaled lr, no weight decay
    state = torch.load(sorted((out / "checkpoints").iterdir())[-1], weights_only=True)
    rate_group = state["optimizer"]["param_groups"][-1]
    assert rate_group["weight_decay"] == 0.0 and len(rate_group["params"]) == 4
    assert rate_group["lr_scale"] == pytest.approx(5.0 / 0.05)

    found = json.loads((out / "found.json").read_text())
    last = rates["entries"][-1]["rates"]
    from atrous.search import round_dilations
    assert found["found_dilations"] == [list(d) for d in round_dilations(last)]
    recipe = out / "found.yaml"
    assert recipe.read_text().startswith("# Found by atrous search")
    config = load_config(recipe, ["train.max_iters=1"])
    assert config["model"]["name"] == "regseg"
    assert config["model"]["options"]["dilations"] == found["found_dilations"]
    summary = train(config, tmp_path / "retrain", progress=False)
    assert summary["iterations"] == 1


@pytest.mark.slow  # three searches (~20 s CPU); the log trimming itself is in test_search_model.py
def test_search_resumes_to_the_same_rates_and_log(tmp_path):
    out = tmp_path / "search"
    args = ["search", "search_toy", "--out", str(out), *sum((["--set", s] for s in TINY + [SLIM]), [])]
    assert main(args) == 0
    first = json.loads((out / "rates.json").read_text())
    assert main(args) == 2  # checkpoints exist: refused without --resume
    (out / "checkpoints" / "iter_0000002.pt").unlink()  # as if killed after iteration 1
    assert main(args + ["--resume"]) == 0
    assert json.loads((out / "rates.json").read_text()) == first
    assert main(args + ["--resume", "--set", "search.lr=1.0"]) == 2  # another search section


def test_search_recipes_are_apart_from_training_recipes():
    from atrous.engine import list_recipes
    from atrous.search.run import search_recipe_path

    assert "search_toy" not in list_recipes()  # atrous train's recipes load without a search section
    assert search_recipe_path("search_toy").parent.name == "search"
    with pytest.raises(FileNotFoundError, match="bundled search recipes: search_toy"):
        search_recipe_path("no_such_recipe")
