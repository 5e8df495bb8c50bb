"""Shared fixtures for the training-core tests: a small names list, its splits, tiny networks."""

import signal
from pathlib import Path

import pytest
import torch

from bnscope.config import RunConfig
from bnscope.train.data import VOCAB_SIZE, make_splits, read_names
from bnscope.models import MLP

REPO = Path(__file__).resolve().parent.parent  # the checkout: scripts/, bench/, the committed names.txt

# the networks here are tiny: one thread is the fastest, and is not slowed down by a busy machine
torch.set_num_threads(1)

# 50 names from the SSA list: enough for an 80/10/10 split of 40/5/5 words and a few hundred
# training examples, small enough that a few hundred steps of a tiny network take well under a second
WORDS = [
    "emma", "olivia", "ava", "mallory", "aislyn", "izabella", "anabella", "bristol", "kalena", "alyana",
    "hawa", "ryanne", "ashanti", "amaris", "daphne", "nichole", "natalia", "sanai", "mari", "payten",
    "evelyn", "semaj", "caleigh", "cambria", "cheryl", "jazlynn", "jadyn", "remington", "roslyn", "mary",
    "isabelle", "katherine", "kaitlin", "isa", "savannah", "lidia", "rainey", "emmalynn", "karolina", "laynee",
    "faith", "maylin", "iliana", "lakyn", "kamya", "brinleigh", "magdalena", "marin", "marjorie", "elizabella",
]  # fmt: skip

# a network small enough for fast tests; the rest of the knobs keep the lecture's defaults
TINY = dict(n_hidden=16, n_layers=2, batch_size=32, steps=200, stats_every=50, dev_every=100)


@pytest.fixture
def words() -> list[str]:
    return list(WORDS)


@pytest.fixture
def names_file(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("\n".join(WORDS) + "\n")
    return path


@pytest.fixture(scope="session")
def splits():
    return make_splits(WORDS, block_size=3)


@pytest.fixture(scope="session")
def real_words() -> list[str]:
    """The committed names.txt, for the checks that are about the real data."""
    return read_names()


def ctrl_c_as_in_a_terminal() -> None:
    """For a child the test sends Ctrl-C (SIGINT) to: Python only raises KeyboardInterrupt where
    SIGINT was not ignored when it started, and a job a shell started in the background (CI's, say)
    hands its children SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def tiny_config(**overrides) -> RunConfig:
    return RunConfig(**{**TINY, **overrides})


@pytest.fixture(scope="session")
def make_config():
    """RunConfig of the tiny network, with overrides."""
    return tiny_config


@pytest.fixture(scope="session")
def make_mlp():
    """A bnscope.models.MLP built the way the trainer builds it (seeded init), from the tiny config plus overrides."""

    def make(**overrides) -> MLP:
        config = tiny_config(**overrides)
        return MLP(vocab_size=VOCAB_SIZE, generator=torch.Generator().manual_seed(config.seed), **config.model_kwargs())

    return make
