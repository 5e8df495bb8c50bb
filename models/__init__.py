"""The networks. They know nothing of training, statistics or HTTP: usable from a notebook alone."""

from models.mlp import MLP
from models import lecture

__all__ = ["MLP", "lecture"]
