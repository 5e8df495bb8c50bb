import random

import pytest
import torch

from bnscope.train.data import (
    ITOS,
    STOI,
    VOCAB_SIZE,
    NamesFileError,
    build_dataset,
    decode,
    encode,
    make_splits,
    read_names,
)


def test_vocabulary_is_dot_then_a_to_z():
    assert VOCAB_SIZE == 27
    assert ITOS[0] == "."
    assert [STOI[ch] for ch in "abcdefghijklmnopqrstuvwxyz"] == list(range(1, 27))
    assert decode(encode("zoe")) == "zoe"


def test_build_dataset_gives_one_window_per_character_and_the_end():
    X, Y = build_dataset(["emma"], block_size=3)

    assert X.dtype == Y.dtype == torch.long
    assert [decode(row) for row in X.tolist()] == ["...", "..e", ".em", "emm", "mma"]
    assert decode(Y.tolist()) == "emma."


def test_build_dataset_restarts_the_context_at_every_word():
    X, Y = build_dataset(["ab", "c"], block_size=2)

    assert [decode(row) for row in X.tolist()] == ["..", ".a", "ab", "..", ".c"]
    assert decode(Y.tolist()) == "ab.c."


def test_make_splits_is_the_lectures_80_10_10_split(words):
    splits = make_splits(words, block_size=3)

    # the lecture's recipe, literally (on the global random module, restored afterwards)
    state = random.getstate()
    try:
        shuffled = list(words)
        random.seed(42)
        random.shuffle(shuffled)
    finally:
        random.setstate(state)
    n1, n2 = int(0.8 * len(shuffled)), int(0.9 * len(shuffled))
    assert (n1, n2) == (40, 45)
    for name, part in [("train", shuffled[:n1]), ("dev", shuffled[n1:n2]), ("test", shuffled[n2:])]:
        X, Y = splits.split(name)
        Xw, Yw = build_dataset(part, block_size=3)
        assert torch.equal(X, Xw) and torch.equal(Y, Yw), name
    assert splits.train_words == frozenset(shuffled[:n1])


def test_make_splits_leaves_the_callers_list_alone(words):
    before = list(words)
    make_splits(words, block_size=3)
    assert words == before


def test_read_names_skips_blank_lines_and_surrounding_spaces(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("emma\n\n  ava \r\n\nzoe")
    assert read_names(path) == ["emma", "ava", "zoe"]


@pytest.mark.parametrize(
    "text, line, bad",
    [("emma\nOlivia\nava\n", 2, "'O'"), ("emma\n\nava\nzo-e\n", 4, "'-'"), ("emma\nan.na\n", 2, "'.'")],
)
def test_read_names_refuses_a_character_outside_a_to_z_naming_line_and_character(tmp_path, text, line, bad):
    path = tmp_path / "names.txt"
    path.write_text(text)
    with pytest.raises(NamesFileError) as err:
        read_names(path)
    assert f"line {line}" in str(err.value)
    assert bad in str(err.value)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("text", ["", "\n\n   \n"], ids=["empty", "blank-lines-only"])
def test_read_names_refuses_a_file_without_names(tmp_path, text):
    path = tmp_path / "names.txt"
    path.write_text(text)
    with pytest.raises(NamesFileError, match="no names found"):
        read_names(path)


def test_read_names_refuses_a_missing_file(tmp_path):
    path = tmp_path / "nowhere.txt"
    with pytest.raises(NamesFileError, match="cannot read names file") as err:
        read_names(path)
    assert str(path) in str(err.value)
