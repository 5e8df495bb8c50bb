"""names.txt -> vocabulary, context windows and the lecture's 80/10/10 train/dev/test split."""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads only when a dataset is built: `bnscope --help` stays fast
    import torch

from bnscope import PACKAGE_DIR

DEFAULT_NAMES = PACKAGE_DIR / "names.txt"  # built by scripts/build_names.py
# '.' marks both the start and the end of a name; letters are 1..26, as in the lecture
ITOS = ["."] + list(string.ascii_lowercase)
STOI = {s: i for i, s in enumerate(ITOS)}
VOCAB_SIZE = len(ITOS)


class NamesFileError(ValueError):
    """A names file that cannot be used; the message names the file and the line."""


def outside_vocab(text: str) -> list[str]:
    """The characters of `text` that a name cannot contain (anything but a-z), sorted, once each."""
    return sorted({ch for ch in text if ch not in STOI or ch == "."})


PREFIX_PATTERN = "^[a-z]*$"  # a sample's prefix (bnscope.train.sampling); here, without torch, for the API's check
PREFIX_MAX_LENGTH = 20


def check_prefix(prefix: str) -> str:
    bad = outside_vocab(prefix)
    if bad:
        raise ValueError(f"prefix has characters outside a-z: {' '.join(map(repr, bad))}")
    return prefix


def encode(text: str) -> list[int]:
    return [STOI[ch] for ch in text]


def decode(ix: list[int]) -> str:
    return "".join(ITOS[i] for i in ix)


def read_names(path: Path | str = DEFAULT_NAMES) -> list[str]:
    """One name a line, lowercase a-z. Blank lines are skipped; anything else is an error."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise NamesFileError(f"{path}: cannot read names file: {err}") from err
    words = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        word = line.strip()
        if not word:
            continue
        bad = outside_vocab(word)
        if bad:
            raise NamesFileError(
                f"{path}, line {lineno}: {word!r} has characters outside a-z: {' '.join(map(repr, bad))}"
            )
        words.append(word)
    if not words:
        raise NamesFileError(f"{path}: no names found (the file is empty or holds blank lines only)")
    return words


def build_dataset(words: list[str], block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (context, next character) pair: X (N, block_size) int64, Y (N,) int64."""
    import torch

    X, Y = [], []
    for w in words:
        context = [0] * block_size
        for ch in w + ".":
            ix = STOI[ch]
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]  # crop and append
    return torch.tensor(X, dtype=torch.long), torch.tensor(Y, dtype=torch.long)


@dataclass(frozen=True)
class Splits:
    Xtr: torch.Tensor
    Ytr: torch.Tensor
    Xdev: torch.Tensor
    Ydev: torch.Tensor
    Xte: torch.Tensor
    Yte: torch.Tensor
    train_words: frozenset[str]  # to mark a sampled name as seen-in-train or novel

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return {"train": (self.Xtr, self.Ytr), "dev": (self.Xdev, self.Ydev), "test": (self.Xte, self.Yte)}[name]


def split_words(words: list[str], seed: int = 42) -> tuple[list[str], list[str], list[str]]:
    """The lecture's split of the words: shuffle with random.seed(42), then 80% train, 10% dev, 10% test."""
    words = list(words)
    random.Random(seed).shuffle(words)  # the same permutation as random.seed(42); random.shuffle(words)
    n1 = int(0.8 * len(words))
    n2 = int(0.9 * len(words))
    return words[:n1], words[n1:n2], words[n2:]


def make_splits(words: list[str], block_size: int, seed: int = 42) -> Splits:
    """The lecture's split (split_words), each part's examples built."""
    train, dev, test = split_words(words, seed)
    Xtr, Ytr = build_dataset(train, block_size)
    Xdev, Ydev = build_dataset(dev, block_size)
    Xte, Yte = build_dataset(test, block_size)
    return Splits(Xtr, Ytr, Xdev, Ydev, Xte, Yte, frozenset(train))
