"""Every knob of a run in one place, with the lecture's defaults and the allowed ranges.

The same model validates the command line, the REST API and a stored run, so an out-of-range
value is refused everywhere with one message naming the field and the range.
"""

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bnscope.train.data import DEFAULT_NAMES, VOCAB_SIZE

JSON_INT = 2**53 - 1  # the largest integer every JSON reader holds exactly (JavaScript's MAX_SAFE_INTEGER)
MAX_PARAMETERS = 5_000_000  # keeps one run's memory, checkpoints and steps/s within reason


def not_a_bool(value, info):
    """A setting's validator: true and false are not numbers, nor words (pydantic would read true as 1)."""
    if isinstance(value, bool) and RunConfig.model_fields[info.field_name].annotation is not bool:
        raise ValueError("must be a number, not true or false")
    return value


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # the network
    n_embd: int = Field(10, ge=1, le=256, description="dimensions of each character's embedding vector")
    n_hidden: int = Field(100, ge=1, le=4096, description="neurons in each hidden layer")
    n_layers: int = Field(5, ge=1, le=16, description="hidden Linear -> BatchNorm -> Tanh blocks")
    block_size: int = Field(3, ge=1, le=16, description="characters of context used to predict the next one")
    batchnorm: StrictBool = Field(True, description="BatchNorm1d after every Linear (off: Linear layers keep a bias)")
    init: Literal["kaiming", "torch-default"] = Field(
        "kaiming",
        description="kaiming: randn/sqrt(fan_in)*gain; torch-default: nn.Linear's U(-1/sqrt(fan_in), 1/sqrt(fan_in))",
    )
    gain: float = Field(5 / 3, gt=0, le=20, description="init gain on the Linear weights (5/3 suits tanh)")
    last_layer_scale: float = Field(
        0.1, gt=0, le=10, description="scales the last BN's gamma (or the last Linear's weight without BN) at init"
    )
    bn_eps: float = Field(1e-5, gt=0, le=1, description="BatchNorm epsilon")
    bn_momentum: float = Field(0.1, gt=0, le=1, description="BatchNorm running-statistics momentum")
    bn_variance: Literal["biased", "unbiased"] = Field(
        "biased",
        description="the batch variance BatchNorm normalises with in training: biased (torch's BatchNorm1d) "
        "or unbiased (x.var(), the lecture's hand-written layer)",
    )
    # the optimisation
    batch_size: int = Field(32, ge=1, le=4096, description="examples per minibatch")
    steps: int = Field(200_000, ge=1, le=10_000_000, description="training steps")
    lr: float = Field(0.1, gt=0, le=100, description="SGD learning rate")
    lr_decay_step: int = Field(150_000, ge=0, le=10_000_000, description="step after which lr is multiplied by 0.1")
    seed: int = Field(2147483647, ge=0, le=JSON_INT, description="seeds the init and the minibatch order")
    batch_order: Literal["own", "lecture"] = Field(
        "own",
        description="own: minibatches from a generator of their own (paired runs of any shape see the same "
        "batches); lecture: from the init's generator right after the init, as the lecture's notebook draws them",
    )
    # the diagnostics
    stats_every: int = Field(100, ge=1, le=1_000_000, description="steps between activation/gradient statistics")
    update_every: int = Field(10, ge=1, le=1_000_000, description="steps between update:data ratio measurements")
    # one dev evaluation (22.8k examples) costs ~100 steps: every 5000 keeps it near 2% of training
    dev_every: int = Field(5000, ge=1, le=1_000_000, description="steps between dev-loss evaluations (full dev split)")

    _not_a_bool = field_validator("*", mode="before")(not_a_bool)

    @model_validator(mode="after")
    def _check_together(self) -> "RunConfig":
        if self.batchnorm and self.batch_size < 2:
            raise ValueError("batch_size must be >= 2 when batchnorm is on (a batch of one has no variance)")
        if self.parameter_count() > MAX_PARAMETERS:
            raise ValueError(
                f"n_hidden={self.n_hidden} with n_layers={self.n_layers} makes {self.parameter_count():,} "
                f"parameters; at most {MAX_PARAMETERS:,} are allowed"
            )
        return self

    def parameter_count(self, vocab_size: int = VOCAB_SIZE) -> int:
        fan_in = self.n_embd * self.block_size
        hidden = fan_in * self.n_hidden + (self.n_layers - 1) * self.n_hidden * self.n_hidden
        per_unit = 2 if self.batchnorm else 1  # BN's gamma and beta, or the Linear's bias
        units = self.n_layers * self.n_hidden + vocab_size
        return vocab_size * self.n_embd + hidden + self.n_hidden * vocab_size + per_unit * units

    def model_kwargs(self) -> dict:
        """The arguments of bnscope.models.MLP (less vocab_size and generator)."""
        return dict(
            block_size=self.block_size,
            n_embd=self.n_embd,
            n_hidden=self.n_hidden,
            n_layers=self.n_layers,
            batchnorm=self.batchnorm,
            init=self.init,
            gain=self.gain,
            last_layer_scale=self.last_layer_scale,
            bn_eps=self.bn_eps,
            bn_momentum=self.bn_momentum,
            bn_variance=self.bn_variance,
        )

    def lr_at(self, step: int, base_lr: float | None = None) -> float:
        """The scheduled learning rate: the lecture's step decay (x0.1 after lr_decay_step) of
        `lr`, or of a base rate the user set while the run trains."""
        lr = self.lr if base_lr is None else base_lr
        return lr if step < self.lr_decay_step else lr * 0.1


def describe_errors(err: ValidationError) -> str:
    """One line per problem, each naming the field: 'gain: Input should be greater than 0'."""
    lines = []
    for problem in err.errors():
        field = ".".join(str(part) for part in problem["loc"]) or "config"
        lines.append(f"{field}: {problem['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)


class Settings(BaseSettings):
    """The server's settings: flags of `bnscope serve`, or BNSCOPE_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="BNSCOPE_")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    data_dir: Path = Path.home() / ".bnscope"
    token: str | None = None  # required when binding anything but loopback
    # names the server answers to besides localhost and its bound address (a Host of any other is
    # refused, against DNS rebinding); from the environment: comma-separated
    allowed_hosts: Annotated[list[str], NoDecode] = []
    names: Path = DEFAULT_NAMES
    max_runs: int = Field(os.cpu_count() or 1, ge=1, le=256)  # runs training at once, a worker each; more wait queued
    max_queued: int = Field(64, ge=0, le=10_000)  # runs waiting for a slot; beyond it: 429 with Retry-After
    checkpoint_every: int = Field(10_000, ge=1)  # steps between checkpoints (also on pause/stop/finish)
    autostart: bool = True  # train the default network when the store has no runs at all
    ray: str | None = None  # train each run as a Ray actor: a cluster address, or "local" for a private local Ray
    max_body_bytes: int = 16_384
    max_ingest_bytes: int = Field(8 * 2**20, ge=1024)  # a watched run's batch of events
    header_timeout_s: float = Field(10.0, gt=0)  # a request line and headers slower than this: connection closed
    body_timeout_s: float = Field(30.0, gt=0)  # a request body not whole this long after its head: connection cut
    send_timeout_s: float = Field(30.0, gt=0)  # a response its client takes nothing of for this long: connection cut
    # connections and event streams held at once, overall (beyond: 503) and per client address (beyond: 429);
    # a browser opens at most 6 connections to a server, whatever its tabs
    max_connections: int = Field(256, ge=1)
    max_connections_per_address: int = Field(64, ge=1)
    max_streams: int = Field(128, ge=1)
    max_streams_per_address: int = Field(32, ge=1)
    stream_queue_bytes: int = Field(4 * 2**20, ge=2**16)  # a stream client this far behind is dropped...
    stream_queue_seconds: float = Field(10.0, gt=0)  # ...or one whose oldest unsent event is this old
    max_db_mb: int | None = Field(None, ge=1)  # cap on the database file; a run that would pass it fails

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        return [name.strip() for name in value.split(",") if name.strip()] if isinstance(value, str) else value
