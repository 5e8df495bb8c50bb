"""The networks. They know nothing of training, statistics or HTTP: usable from a notebook alone."""

from bnscope.models.mlp import MLP
from bnscope.models import lecture

__all__ = ["MLP", "lecture"]
