"""bnscope: train the makemore BatchNorm MLP and watch its insides while it learns."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository: names.txt, templates/, static/
