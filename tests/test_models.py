"""The model contract, checked for every registered model (smp-style: one suite, all models)."""
from __future__ import annotations

import pytest
import torch

import atrous
from atrous.analysis import count_params
from atrous.models import get_entry, split_outputs

# Exact parameter counts (eval model) at the default number of classes.
PARAMS = {
    "regseg": 3_334_951,
    "regseg_large": 6_131_579,
    "dwrseg_base": 2_687_507,
    "dwrseg_large": 3_683_859,
    "fassdnet": 2_845_351,
    "fassdnet_l1": 2_845_351,
    "fassdnet_l2": 2_289_454,
    "dsnet": 6_755_539,
    "dsnet_head64": 6_551_315,
    "dsnet_head256": 10_024_278,
    "dsnet_base": 37_461_395,
    "regseg_search": 3_334_977,  # regseg (first block as two branches) + 26 dilation rates
}

MODELS = atrous.list_models(aliases=False)  # an alias builds the same model: tested once


def test_every_model_has_an_expected_parameter_count():
    assert sorted(PARAMS) == MODELS


@pytest.mark.parametrize("name", MODELS)
def test_parameter_count(name):
    assert count_params(atrous.create_model(name)) == PARAMS[name]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("size", [(64, 64), (97, 131), (32, 48)])
def test_eval_logits_at_input_size(name, size):
    torch.manual_seed(0)
    model = atrous.create_model(name, num_classes=5).eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, *size))
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    assert y.shape == (2, 5, *size)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", MODELS)
def test_training_output_and_backward(name):
    torch.manual_seed(0)
    model = atrous.create_model(name, num_classes=4).train()
    x = torch.randn(2, 3, 64, 96)
    main, aux = split_outputs(model(x))
    for y in [main, *aux]:
        assert y.shape == (2, 4, 64, 96)
    loss = sum(y.square().mean() for y in [main, *aux])
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


@pytest.mark.parametrize("name", MODELS)
def test_rejects_bad_input(name):
    model = atrous.create_model(name).eval()
    with pytest.raises(ValueError, match="x:"):
        model(torch.randn(1, 3, 16, 64))
    with pytest.raises(ValueError, match="channels"):
        model(torch.randn(1, 1, 64, 64))


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_round_trip_through_safetensors(name, tmp_path):
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    a = atrous.create_model(name, num_classes=3).eval()
    save_file({k: v.contiguous() for k, v in a.state_dict().items()}, tmp_path / "w.safetensors")
    torch.manual_seed(1)
    b = atrous.create_model(name, num_classes=3).eval()
    b.load_state_dict(load_file(tmp_path / "w.safetensors"))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("name", MODELS)
def test_model_card_and_field_of_view(name):
    card = get_entry(name).card
    assert card.paper and card.reference
    fov = atrous.field_of_view(atrous.create_model(name))
    assert fov > 32


def test_unknown_name_lists_valid_names_and_closest():
    with pytest.raises(KeyError) as info:
        atrous.create_model("regsg")
    text = str(info.value)
    assert "Closest: regseg" in text and "Valid names:" in text and "regseg_large" in text


def test_unknown_override_is_named():
    with pytest.raises(ValueError, match="unknown option.*dilation"):
        atrous.create_model("regseg", dilation=[[1]])


def test_list_models_is_sorted_and_filters():
    assert MODELS == sorted(MODELS)
    assert atrous.list_models("regseg_*") == ["regseg_large", "regseg_search"]


def test_alias_builds_the_same_model():
    assert "dsnet_head128" in atrous.list_models() and "dsnet_head128" not in MODELS
    a, b = atrous.create_model("dsnet_head128"), atrous.create_model("dsnet")
    assert a.config == b.config and get_entry("dsnet_head128") is get_entry("dsnet")
