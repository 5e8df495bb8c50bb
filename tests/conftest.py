"""Shared fixtures: a small names list, its splits, tiny networks; the app in-process (TestClient, real SQLite
in tmp_path), a live server, and one Chromium for the whole session."""

import os
from pathlib import Path

import pytest
import torch
from bnscope.api.main import create_app
from bnscope.config import RunConfig, Settings
from bnscope.models import MLP
from bnscope.train.data import VOCAB_SIZE, make_splits, read_names
from fastapi.testclient import TestClient
from playwright.sync_api import sync_playwright

from bench.page import CHROMIUM, CHROMIUM_ARGS
from tests.servers import live_server

REPO = Path(__file__).resolve().parent.parent  # the checkout: scripts/, bench/, the committed names.txt

# the networks here are tiny: one thread is the fastest, and is not slowed down by a busy machine
torch.set_num_threads(1)

# 50 names from the SSA list: enough for an 80/10/10 split of 40/5/5 words and a few hundred
# training examples, small enough that a few hundred steps of a tiny network take well under a second
WORDS = [
    "emma",
    "olivia",
    "ava",
    "mallory",
    "aislyn",
    "izabella",
    "anabella",
    "bristol",
    "kalena",
    "alyana",
    "hawa",
    "ryanne",
    "ashanti",
    "amaris",
    "daphne",
    "nichole",
    "natalia",
    "sanai",
    "mari",
    "payten",
    "evelyn",
    "semaj",
    "caleigh",
    "cambria",
    "cheryl",
    "jazlynn",
    "jadyn",
    "remington",
    "roslyn",
    "mary",
    "isabelle",
    "katherine",
    "kaitlin",
    "isa",
    "savannah",
    "lidia",
    "rainey",
    "emmalynn",
    "karolina",
    "laynee",
    "faith",
    "maylin",
    "iliana",
    "lakyn",
    "kamya",
    "brinleigh",
    "magdalena",
    "marin",
    "marjorie",
    "elizabella",
]

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


@pytest.fixture(scope="session")
def chromium():
    """One Chromium for the session; each test opens its own pages (a context each) in it."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: install Debian's chromium package to run the browser tests"
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI must always run them
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", autostart=False, checkpoint_every=100)


@pytest.fixture
def client(settings: Settings):
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def server(tmp_path: Path):
    """A live server that does not autostart a run (tests create the runs they need)."""
    with live_server(tmp_path / "data", env={"BNSCOPE_AUTOSTART": "false"}) as running:
        yield running


def pytest_collection_modifyitems(items):
    """Every test that drives Chromium is slow (a live server, a page, its charts): the fast tier leaves the
    page to the full suite. They run last: Playwright's sync API keeps its event loop open in the main
    thread while the session's Chromium lives, and a test after it could not asyncio.run()."""
    browser = [item for item in items if "chromium" in getattr(item, "fixturenames", ())]
    for item in browser:
        item.add_marker(pytest.mark.slow)
    items[:] = [item for item in items if item not in browser] + browser
