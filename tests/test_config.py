"""Every config composes through Hydra's compose API; bad keys and values fail with one clear line."""

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from effconv.config import check_group_choices, compose, group_options, validate
from effconv.errors import UserError


@pytest.mark.parametrize("group", ["model", "data", "recipe", "logger", "launcher"])
def test_every_group_option_composes(group):
    options = group_options(group)
    assert options, f"effconv/conf/{group}/ is empty"
    for option in options:
        overrides = [f"{group}={option}"] + (["model.name=resnet18"] if (group, option) == ("model", "timm") else [])
        cfg = compose(overrides)
        assert not OmegaConf.missing_keys(cfg), (group, option, OmegaConf.missing_keys(cfg))
        if group in ("model", "data", "recipe"):
            assert cfg[group].name, (group, option)


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_every_experiment_composes(experiment):
    cfg = compose([f"experiment={experiment}"])
    assert cfg.experiment == experiment, "an experiment file must set experiment: <paper>/<table>"
    assert cfg.run_name.startswith(experiment + "/")
    for row in (cfg.table or {}).get("rows", []):
        compose([f"experiment={experiment}", *row.overrides])  # every row composes too


def test_experiment_is_chosen_with_or_without_plus():
    """The defaults list holds ``experiment: null``: ``experiment=`` chooses one, and the ``+`` form of older
    commands gives the same config and the same run name."""
    plain = compose(["experiment=baselines/digits", "seed=1"])
    plus = compose(["+experiment=baselines/digits", "seed=1"])
    assert plain == plus and plain.run_name == "baselines/digits/resnet20_cifar-digits-quick__seed=1"
    assert compose([]).experiment is None


def test_default_config_is_offline_digits():
    cfg = compose([])
    assert (cfg.model.name, cfg.data.name, cfg.recipe.name, cfg.logger.name) == (
        "resnet20_cifar",
        "digits",
        "quick",
        "csv",
    )
    assert cfg.run_name == "resnet20_cifar-digits-quick"


def test_run_name_carries_overrides_but_not_locations():
    cfg = compose(["model.conv=standard", "seed=3", "data.root=/some/where", "output_root=/tmp/x"])
    assert cfg.run_name == "resnet20_cifar-digits-quick__model.conv=standard,seed=3"


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("recipe.epchs=3", "epchs"),
        ("data.imgsize=32", "imgsize"),
        ("sede=1", "sede"),
    ],
)
def test_misspelt_key_fails_at_compose(override, fragment):
    with pytest.raises(ConfigCompositionException, match=fragment):
        compose([override])


def test_wrong_type_fails_at_compose():
    with pytest.raises(ConfigCompositionException):
        compose(["recipe.epochs=many"])


def test_unknown_group_option_lists_close_matches():
    with pytest.raises(UserError, match=r"unknown model 'resnet20_cifr' \(did you mean resnet20_cifar"):
        check_group_choices(["model=resnet20_cifr"])
    with pytest.raises(UserError, match="unknown recipe 'nope'.*available: .*quick"):
        check_group_choices(["recipe=quick,nope"])  # sweeps are checked value by value
    check_group_choices(["model=resnet20_cifar", "recipe.epochs=3", "+experiment=baselines/digits"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("recipe.epochs=-1", "recipe.epochs must be >= 1 (got -1)"),
        ("recipe.batch_size=0", "recipe.batch_size must be >= 1"),
        ("recipe.lr=0", "recipe.lr must be > 0"),
        ("recipe.label_smoothing=1.5", "label_smoothing must be in [0, 1)"),
        ("amp=fp8", "amp must be auto, none, bf16 or fp16"),
        ("resume=/does/not/exist.pt", "resume must be auto, never or an existing checkpoint file"),
    ],
)
def test_impossible_values_are_one_line_errors(override, message):
    with pytest.raises(UserError) as err:
        validate(compose([override]))
    assert message in str(err.value) and "\n" not in str(err.value)
