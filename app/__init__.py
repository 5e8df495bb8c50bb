"""bnscope: train the makemore BatchNorm MLP and watch its insides while it learns.

Installed, this folder (the repository's app/) is the `bnscope` package and models/ is
`bnscope.models`; names.txt, static/ and templates/ ride along as package data (symlinks here,
copies in the wheel), found through the package, never through the repository's layout.
Importing bnscope is cheap: torch loads only where a command needs it.
"""

from importlib.resources import files
from pathlib import Path

__version__ = "0.2.0"

# the installed package's own folder (a real directory: bnscope installs unzipped)
PACKAGE_DIR = Path(str(files("bnscope")))


def __getattr__(name: str):
    # bnscope.watch without torch at `import bnscope`: bnscope.watched.hooks (and torch) load on first use
    if name == "watch":
        from bnscope.watched.hooks import watch

        return watch
    raise AttributeError(f"module 'bnscope' has no attribute {name!r}")
