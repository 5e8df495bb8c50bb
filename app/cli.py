"""The `bnscope` command: train and sample from a terminal, or serve the dashboard."""

import argparse
import sys
import threading
from pathlib import Path

import torch
from pydantic import ValidationError

from bnscope.config import RunConfig, describe_errors
from bnscope.data import DEFAULT_NAMES, VOCAB_SIZE, NamesFileError, make_splits, read_names


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field, its help the field's description and default."""
    for name, field in RunConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        default = field.default
        if field.annotation is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=f"{field.description} (default: {'on' if default else 'off'})")
        else:
            kind = type(default)
            choices = getattr(field.annotation, "__args__", None) if kind is str else None
            parser.add_argument(flag, type=kind, choices=choices, default=None, metavar=name.upper(),
                                help=f"{field.description} (default: {default:.6g})" if kind is float
                                else f"{field.description} (default: {default})")  # fmt: skip


def _config_from(args: argparse.Namespace) -> RunConfig:
    overrides = {name: getattr(args, name) for name in RunConfig.model_fields if getattr(args, name) is not None}
    return RunConfig(**overrides)


def _train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from bnscope.sampling import sample_names
    from bnscope.trainer import Trainer

    config = _config_from(args)
    splits = make_splits(read_names(args.names), config.block_size)
    bar = tqdm(total=config.steps, unit="step", dynamic_ncols=True, disable=args.quiet)
    finals: dict[str, float] = {}

    def on_event(event: dict) -> None:
        if event["type"] == "scalars" and event["loss"]:
            bar.update(len(event["loss"]))
            bar.set_postfix(loss=f"{event['loss'][-1]:.4f}", lr=f"{event['lr']:.3g}", refresh=False)
        elif event["type"] == "eval" and event.get("final"):
            finals[event["split"]] = event["loss"]
        elif event["type"] == "eval":
            bar.write(f"step {event['step']:>7d}  dev loss {event['loss']:.4f}")

    trainer = Trainer(config, splits, emit=on_event)
    worker = threading.Thread(target=trainer.run, name="train", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
    except KeyboardInterrupt:  # Ctrl-C stops between steps and still saves what was learned
        trainer.stop()
        worker.join()
    bar.close()
    print(f"status: {trainer.status} at step {trainer.step}" + (f" ({trainer.message})" if trainer.message else ""))
    if trainer.status != "finished" and trainer.status != "diverged":
        for split in ("train", "dev", "test"):
            finals[split] = trainer.evaluate(split)
    for split in ("train", "dev", "test"):
        if split in finals:
            print(f"{split:5s} loss {finals[split]:.4f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"config": config.model_dump(), "state": trainer.state_dict()}, args.out)
        print(f"weights saved to {args.out}")
    for row in sample_names(trainer.snapshot()[1], args.samples, block_size=config.block_size, seed=0,
                            train_words=splits.train_words):  # fmt: skip
        print(f"  {row['name']}" + ("" if row["novel"] else "   (in the training set)"))
    return 0 if trainer.status in ("finished", "stopped") else 1


def load_weights(path: Path) -> tuple[RunConfig, torch.nn.Module]:
    """A network saved by `bnscope train --out`, in eval mode."""
    from bnscope.models import MLP

    saved = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only
    config = RunConfig(**saved["config"])
    model = MLP(vocab_size=VOCAB_SIZE, **config.model_kwargs())
    model.load_state_dict(saved["state"]["model"])
    return config, model.eval()


def _sample(args: argparse.Namespace) -> int:
    from bnscope.sampling import sample_names

    config, model = load_weights(args.weights)
    train_words = make_splits(read_names(args.names), config.block_size).train_words
    rows = sample_names(model, args.n, block_size=config.block_size, temperature=args.temperature,
                        prefix=args.prefix, seed=args.seed, max_len=args.max_len, train_words=train_words)  # fmt: skip
    for row in rows:
        print(row["name"] + ("" if row["novel"] else "   (in the training set)"))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from bnscope.server import serve

    return serve(host=args.host, port=args.port, data_dir=args.data_dir, token=args.token, names=args.names,
                 allowed_hosts=args.allowed_hosts)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bnscope", description=__doc__)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for this small net)")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train the network in the terminal")
    _add_config_flags(train)
    train.add_argument("--names", type=Path, default=DEFAULT_NAMES, help="names file, one a-z name a line")
    train.add_argument("--out", type=Path, help="save the trained weights here (a .pt file)")
    train.add_argument("--samples", type=int, default=10, help="names to sample at the end")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_train)

    sample = commands.add_parser("sample", help="sample names from saved weights")
    sample.add_argument("weights", type=Path, help="a .pt file written by `bnscope train --out`")
    sample.add_argument("-n", type=int, default=20, help="how many names")
    sample.add_argument("--temperature", type=float, default=1.0, help="<1 safer, >1 wilder")
    sample.add_argument("--prefix", default="", help="every name starts with these letters")
    sample.add_argument("--seed", type=int, default=None, help="same seed, same names")
    sample.add_argument("--max-len", type=int, default=30, help="longest name, in characters")
    sample.add_argument("--names", type=Path, default=DEFAULT_NAMES, help="names file the weights were trained on")
    sample.set_defaults(func=_sample)

    serve = commands.add_parser("serve", help="run the dashboard (trains the default network at once)")
    serve.add_argument("--host", default=None, help="address to bind (default 127.0.0.1; others need --token)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8000)")
    serve.add_argument("--data-dir", type=Path, default=None, help="where runs are kept (default ~/.bnscope)")
    serve.add_argument("--token", default=None, help="access token required by the API (env BNSCOPE_TOKEN)")
    serve.add_argument("--names", type=Path, default=None, help="names file to train on")
    serve.add_argument("--allowed-hosts", default=None, metavar="NAMES",
                       help="comma-separated host names the server answers to besides localhost and its bound "
                       "address, e.g. the name a proxy serves it under (env BNSCOPE_ALLOWED_HOSTS)")  # fmt: skip
    serve.set_defaults(func=_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        return args.func(args)
    except ValidationError as err:
        print(f"bnscope: invalid settings:\n{describe_errors(err)}", file=sys.stderr)
    except (NamesFileError, ValueError, FileNotFoundError) as err:
        print(f"bnscope: {err}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
