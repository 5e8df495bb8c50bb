"""What each kind of layer is to the statistics: the activation, norm and weighted modules by kind, each
activation function's flat part (where its gradient is (nearly) zero) and fixed bounds, and the sizes
a statistics event keeps to."""

import math

import torch.nn as nn

HIST_BINS = 50
SATURATION = 0.97  # the lecture's "saturated" tanh: |t| > 0.97
DEAD = 0.99  # the lecture's white pixel |t| > 0.99; a unit white for the whole batch is dead
MAX_IMAGE_BITS = 1 << 16  # the |t| > 0.99 image is sent for batches * units up to this...
MAX_IMAGE_ROWS = 1024  # ...and batches and hex digits (4 units each) a row up to this
SMALL_ROW = 1024  # a row this small has its std summed in float64 (see _Rows.mean_std)

# activation modules by kind; a subclass not listed is found by isinstance, in this order
ACTIVATIONS: dict[type, str] = {
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.ReLU6: "relu6",
    nn.Hardtanh: "hardtanh",
    nn.ReLU: "relu",
    nn.LeakyReLU: "leaky_relu",
    nn.PReLU: "prelu",
    nn.ELU: "elu",
    nn.SELU: "selu",
    nn.CELU: "celu",
    nn.GELU: "gelu",
    nn.SiLU: "silu",
    nn.Mish: "mish",
    nn.Hardsigmoid: "hardsigmoid",
    nn.Hardswish: "hardswish",
    nn.Softplus: "softplus",
}
# The flat part of each function, (at or below, at or above): there its derivative is (nearly) zero, so
# a unit there passes almost no gradient back. Saturation counts outputs in it; a unit in it for every
# example is dead. The ReLU family is flat (or nearly) wherever its input is negative: outputs <= 0.
RELU_FLAT = (0.0, math.inf)
FLAT: dict[str, tuple[float, float]] = {
    "tanh": (-SATURATION, SATURATION),
    "hardtanh": (-1.0, 1.0),
    "sigmoid": (1 - SATURATION, SATURATION),
    "hardsigmoid": (0.0, 1.0),
    "relu6": (0.0, 6.0),
    "softplus": (1 - SATURATION, math.inf),
}
DEAD_FLAT: dict[str, tuple[float, float]] = {**FLAT, "tanh": (-DEAD, DEAD), "sigmoid": (1 - DEAD, DEAD)}
# activations whose outputs have fixed bounds get a fixed histogram range; others: the batch's min..max
BOUNDS: dict[str, tuple[float, float]] = {
    "tanh": (-1.0, 1.0),
    "hardtanh": (-1.0, 1.0),
    "sigmoid": (0.0, 1.0),
    "hardsigmoid": (0.0, 1.0),
    "relu6": (0.0, 6.0),
}

NORMS: dict[type, str] = {
    nn.modules.batchnorm._BatchNorm: "batchnorm",
    nn.LayerNorm: "layernorm",
    nn.GroupNorm: "groupnorm",
    nn.modules.instancenorm._InstanceNorm: "instancenorm",
}
if hasattr(nn, "RMSNorm"):  # torch >= 2.4
    NORMS[nn.RMSNorm] = "rmsnorm"
WEIGHTED: dict[type, str] = {
    nn.Linear: "linear",
    nn.Embedding: "embedding",
    nn.modules.conv._ConvNd: "conv",
    nn.MultiheadAttention: "attention",
}


def _kind(module: nn.Module, table: dict[type, str]) -> str | None:
    kind = table.get(type(module))
    if kind is None:
        kind = next((k for cls, k in table.items() if isinstance(module, cls)), None)
    return kind
