import re

import pytest
import torch

from bnscope.train.data import decode
from bnscope.train.sampling import sample_names
from bnscope.train.trainer import Trainer
from bnscope.train.worker import CommandQueue


@pytest.fixture(scope="module")
def trained(make_config, splits):
    """A tiny network trained a few hundred steps on the small names list, in eval mode."""
    config = make_config(steps=300)
    trainer = Trainer(config, splits, device=torch.device("cpu"))
    assert trainer.run(CommandQueue()) == "finished"
    return trainer.model.eval(), config.block_size


def names(rows: list[dict]) -> list[str]:
    return [row["name"] for row in rows]


def test_same_seed_same_names_different_seed_different_names(trained):
    model, block_size = trained
    first = names(sample_names(model, 20, block_size=block_size, seed=1))
    again = names(sample_names(model, 20, block_size=block_size, seed=1))
    other = names(sample_names(model, 20, block_size=block_size, seed=2))
    assert first == again
    assert first != other


def test_names_are_letters_only_and_respect_max_len(trained):
    model, block_size = trained
    rows = sample_names(model, 200, block_size=block_size, temperature=2.0, seed=0, max_len=4)
    assert all(re.fullmatch(r"[a-z]*", name) for name in names(rows))  # the '.' that ends a name is not part of it
    assert max(len(name) for name in names(rows)) == 4  # at temperature 2 some names run into the limit
    long = sample_names(model, 200, block_size=block_size, temperature=2.0, seed=0, max_len=30)
    assert any(len(name) > 4 for name in names(long))  # ...that were longer without it


def test_every_name_starts_with_the_prefix(trained):
    model, block_size = trained
    rows = sample_names(model, 50, block_size=block_size, prefix="ka", seed=0)
    assert all(name.startswith("ka") for name in names(rows))
    assert len(set(names(rows))) > 1


@pytest.mark.parametrize("prefix, bad", [("k4", "'4'"), ("Jo", "'J'"), ("an.a", "'.'")])
def test_a_prefix_outside_a_to_z_is_refused_naming_the_character(trained, prefix, bad):
    model, block_size = trained
    with pytest.raises(ValueError, match="prefix") as err:
        sample_names(model, 5, block_size=block_size, prefix=prefix)
    assert bad in str(err.value)


def greedy_name(model, block_size: int, max_len: int = 30) -> str:
    """The most likely character at every step: what sampling tends to as the temperature goes to 0."""
    context, name = [0] * block_size, ""
    with torch.no_grad():
        while len(name) < max_len:
            ix = int(model(torch.tensor([context])).argmax())
            if ix == 0:
                break
            name += decode([ix])
            context = context[1:] + [ix]
    return name


def test_low_temperature_repeats_the_most_likely_name(trained):
    model, block_size = trained
    cold = set(names(sample_names(model, 200, block_size=block_size, temperature=0.01, seed=0)))
    hot = set(names(sample_names(model, 200, block_size=block_size, temperature=2.0, seed=0)))
    assert len(cold) < len(hot)
    assert cold == {greedy_name(model, block_size)}


def test_novel_is_false_exactly_for_names_in_the_training_words(trained):
    model, block_size = trained
    sampled = names(sample_names(model, 40, block_size=block_size, seed=3))
    seen = frozenset(sampled[::2])  # every other sampled name counts as a training word
    rows = sample_names(model, 40, block_size=block_size, seed=3, train_words=seen)
    flags = [row["novel"] for row in rows]
    assert flags == [name not in seen for name in sampled]
    assert True in flags and False in flags


def test_sampling_leaves_the_model_unchanged(trained):
    model, block_size = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sample_names(model, 50, block_size=block_size, seed=0)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_zero_names_is_an_empty_list_and_a_negative_count_is_refused(trained):
    model, block_size = trained
    assert sample_names(model, 0, block_size=block_size) == []
    with pytest.raises(ValueError, match="n must be"):
        sample_names(model, -1, block_size=block_size)


def test_a_temperature_of_zero_or_below_is_refused(trained):
    model, block_size = trained
    with pytest.raises(ValueError, match="temperature"):
        sample_names(model, 5, block_size=block_size, temperature=0)


def test_one_at_a_time_draws_each_name_to_its_end_before_the_next_begins(trained):
    model, block_size = trained
    twenty = names(sample_names(model, 20, block_size=block_size, seed=7, one_at_a_time=True))
    five = names(sample_names(model, 5, block_size=block_size, seed=7, one_at_a_time=True))
    assert twenty[:5] == five  # a name's draws do not depend on how many names follow it
    assert len(set(twenty)) > 1
    short = names(sample_names(model, 20, block_size=block_size, seed=7, prefix="ka", max_len=4, one_at_a_time=True))
    assert all(name.startswith("ka") and len(name) <= 4 for name in short)
