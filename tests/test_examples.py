"""The examples in examples/ run as a user runs them (a few steps each) and record the layers their
docstrings name."""

import subprocess
import sys

import pytest

from bnscope.storage.store import Store
from tests.conftest import REPO

pytestmark = pytest.mark.slow  # each example in a child Python, torch and all

EXAMPLES = {
    "lecture_torch_nn.py": {
        "activations": {"layers.2": "tanh", "layers.14": "tanh"},
        "weights": {"embedding": "embedding", "layers.0": "linear"},
        "norms": {"layers.1": "batchnorm", "layers.16": "batchnorm"},
    },
    "lecture_layers.py": {  # the lecture's own layers: named as the lecture names them, by position
        "activations": {f"tanh{i} · layers[{3 * i - 1}]": "tanh" for i in range(1, 6)},
        "weights": {"C": "embedding", "linear1 · layers[0]": "linear"},
        "norms": {"batchnorm1 · layers[1]": "batchnorm"},
    },
    "cnn.py": {
        "activations": {"relu": "relu", "head.4": "relu"},
        "weights": {"conv1": "conv", "conv2": "conv", "head.2": "linear"},
        "norms": {"bn1": "batchnorm", "bn2": "batchnorm"},
    },
    "transformer_block.py": {
        "activations": {"blocks.0.mlp.1": "gelu", "blocks.1.mlp.1": "gelu"},
        "weights": {
            "token": "embedding",
            "blocks.0.attn.in_proj_weight": "attention",
            "blocks.0.attn.out_proj": "linear",
        },
        "norms": {"blocks.0.ln1": "layernorm", "ln_f": "layernorm"},
    },
}


@pytest.mark.parametrize("example", EXAMPLES)
def test_an_example_records_its_layers(example, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / example),
            "--data-dir",
            str(tmp_path),
            "--steps",
            "12",
            "--every",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "0 dropped" in result.stdout
    store = Store(tmp_path / "bnscope.sqlite3")
    (run,) = store.runs()
    assert (run["source"], run["status"], run["step"]) == ("watched", "finished", 12)
    assert store.stats_steps(run["id"]) == [0, 5, 10]
    for group, expected in EXAMPLES[example].items():
        kinds = {entry["name"]: entry["kind"] for entry in run["model"][group]}
        assert {name: kinds.get(name) for name in expected} == expected, group
