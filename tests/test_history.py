"""Series names, decimation levels and even decimation."""

import torch

from bnscope import diagnostics
from bnscope.config import RunConfig
from bnscope.data import VOCAB_SIZE
from bnscope.history import decimation_level, evenly, layer_names, level_of
from bnscope.models import MLP


def test_layer_names_match_what_diagnostics_reports_for_the_network():
    for config in (RunConfig(), RunConfig(batchnorm=False, n_layers=2)):
        model = MLP(vocab_size=VOCAB_SIZE, **config.model_kwargs())
        names = layer_names(config)
        assert names["tanh"] == diagnostics.layer_names(model, torch.nn.Tanh)
        assert names["weights"] == diagnostics.weight_names(model)
        assert names["batchnorm"] == diagnostics.layer_names(model, torch.nn.BatchNorm1d)


def test_keeping_levels_from_l_up_keeps_every_2_to_the_l_th_sample():
    samples = range(1000)
    for level in range(6):
        kept = [k for k in samples if level_of(k) >= level]
        assert kept == list(range(0, 1000, 2**level))


def test_the_decimation_level_bounds_the_points():
    for count in (1, 2, 1999, 2000, 2001, 10_000, 1_000_000):
        level = decimation_level(count, 2000)
        kept = len(range(0, count, 2**level))
        assert kept + 1 <= 2000  # room for the last point
        assert level == 0 or len(range(0, count, 2 ** (level - 1))) + 1 > 2000  # and no coarser than needed


def test_evenly_keeps_first_and_last_and_spaces_the_rest():
    items = list(range(101))
    picked = evenly(items, 11)
    assert picked == list(range(0, 101, 10))
    assert evenly(items, 500) == items
    assert evenly(list(range(7)), 2) == [0, 6]
