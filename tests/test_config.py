import pytest
from pydantic import ValidationError

from bnscope.config import RunConfig, describe_errors


def test_defaults_are_the_lectures_settings():
    config = RunConfig()
    assert (config.n_embd, config.n_hidden, config.n_layers, config.block_size) == (10, 100, 5, 3)
    assert config.batchnorm is True
    assert config.init == "kaiming"
    assert config.gain == 5 / 3
    assert config.last_layer_scale == 0.1
    assert (config.batch_size, config.steps, config.lr, config.lr_decay_step) == (32, 200_000, 0.1, 150_000)
    assert config.seed == 2147483647
    assert (config.bn_eps, config.bn_momentum) == (1e-5, 0.1)


@pytest.mark.parametrize(
    "settings, field",
    [
        ({"gain": 0}, "gain"),
        ({"gain": -1.0}, "gain"),
        ({"n_layers": 0}, "n_layers"),
        ({"n_hidden": 4097}, "n_hidden"),
        ({"lr": 0}, "lr"),
        ({"init": "xavier"}, "init"),
        ({"batch_size": 1}, "batch_size"),  # BatchNorm needs two examples to have a variance
        ({"hidden": 100}, "hidden"),  # not a knob at all
    ],
)
def test_out_of_range_settings_are_refused_naming_the_field(settings, field):
    with pytest.raises(ValidationError) as err:
        RunConfig(**settings)
    message = describe_errors(err.value)
    assert field in message
    assert len(message.splitlines()) == 1


def test_describe_errors_gives_one_line_per_problem():
    with pytest.raises(ValidationError) as err:
        RunConfig(gain=0, n_layers=0)
    lines = describe_errors(err.value).splitlines()
    assert [line.split(":")[0] for line in lines] == ["n_layers", "gain"]


def test_a_batch_of_one_is_fine_without_batchnorm():
    assert RunConfig(batchnorm=False, batch_size=1).batch_size == 1


def test_the_range_limits_themselves_are_accepted():
    config = RunConfig(n_hidden=4096, n_layers=1, gain=20)
    assert (config.n_hidden, config.n_layers, config.gain) == (4096, 1, 20)


def test_config_is_frozen():
    with pytest.raises(ValidationError):
        RunConfig().lr = 1.0


def test_lr_at_decays_tenfold_at_lr_decay_step():
    config = RunConfig(lr=0.2, lr_decay_step=100)
    assert config.lr_at(0) == config.lr_at(99) == 0.2
    assert config.lr_at(100) == config.lr_at(10_000) == pytest.approx(0.02)
    assert RunConfig().lr_at(149_999) == 0.1 and RunConfig().lr_at(150_000) == pytest.approx(0.01)
