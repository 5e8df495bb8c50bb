"""The `bnscope` command: train and sample from a terminal, or serve the dashboard."""

import argparse
import sys
import threading
from pathlib import Path

from pydantic import ValidationError

from bnscope import __version__
from bnscope.config import RunConfig, describe_errors
from bnscope.train.data import DEFAULT_NAMES, NamesFileError, make_splits, read_names, split_words


def format_duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s}s" if s < 60 else f"{s // 60}m {s % 60:02d}s" if s < 3600 else f"{s // 3600}h {s % 3600 // 60:02d}m"


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field, its help the field's description and default."""
    for name, field in RunConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        default = field.default
        if field.annotation is bool:
            parser.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{field.description} (default: {'on' if default else 'off'})",
            )
        else:
            kind = type(default)
            choices = getattr(field.annotation, "__args__", None) if kind is str else None
            parser.add_argument(
                flag,
                type=kind,
                choices=choices,
                default=None,
                metavar=name.upper(),
                help=f"{field.description} (default: {default:.6g})"
                if kind is float
                else f"{field.description} (default: {default})",
            )


def _config_from(args: argparse.Namespace) -> RunConfig:
    overrides = {name: getattr(args, name) for name in RunConfig.model_fields if getattr(args, name) is not None}
    return RunConfig(**overrides)


def _progress(config, bar, seen: dict):
    """The CLI's listener: the progress bar with its ETA, dev losses as lines, and in `seen` the final
    losses, status and checkpoint. It runs on the training thread: quick, never blocking."""

    def on_event(event: dict) -> None:
        kind = event["type"]
        if kind == "scalars" and event["loss"]:
            bar.update(len(event["loss"]))
            rate = event["steps_per_s"]  # 0 until measured after a warm-up: no guess from the first slow steps
            eta = format_duration((config.steps - bar.n) / rate) if rate else "…"
            bar.set_postfix_str(
                f"eta {eta}, {rate:.0f} steps/s, loss {event['loss'][-1]:.4f}, lr {event['lr']:.3g}", refresh=False
            )
        elif kind == "eval" and event.get("final"):
            seen["finals"][event["split"]] = event["loss"]
        elif kind == "eval":
            bar.write(f"step {event['step']:>7d}  dev loss {event['loss']:.4f}")
        elif kind == "checkpoint":
            seen["checkpoint"] = event["state"]
        elif kind == "status":
            seen["status"] = event

    return on_event


def _train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from bnscope.runs.workers import ThreadWorker
    from bnscope.train.worker import RunSpec

    config = _config_from(args)
    words = read_names(args.names)
    bar = tqdm(
        total=config.steps,
        unit="step",
        dynamic_ncols=True,
        disable=args.quiet,
        bar_format="{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
    )
    seen: dict = {"finals": {}, "status": None, "checkpoint": None}
    on_event = _progress(config, bar, seen)
    done = threading.Event()
    # the CLI needs only the final checkpoint: the trainer makes one whenever training stops
    worker = ThreadWorker(
        0,
        RunSpec(config, words, checkpoint_every=config.steps + 1, threads=args.threads),
        on_event,
        lambda reason: done.set(),
    )
    interrupted = False
    try:
        while not done.wait(0.2):
            pass
    except KeyboardInterrupt:  # Ctrl-C: stop between steps and keep what was learned
        interrupted = True
        worker.send({"op": "stop"})
        done.wait()
    bar.close()
    status = seen["status"] or {"status": "failed", "step": 0, "message": "the trainer ended without a status"}
    print(f"{status['status']} at step {status['step']}" + (f" ({status['message']})" if status["message"] else ""))
    if seen["checkpoint"] is not None:
        _report(config, words, seen, args)
    return 130 if interrupted else 0 if status["status"] == "finished" else 1


def _report(config: RunConfig, words: list[str], seen: dict, args: argparse.Namespace) -> None:
    """The final losses, the weights saved with --out, and a few samples."""
    import io

    import torch

    from bnscope.train.sampling import sample_names
    from bnscope.train.trainer import load_model, split_loss

    model = load_model(config, seen["checkpoint"])
    splits = None  # the examples are built again only for a final loss the run did not send (a stopped run)
    for split in ("train", "dev", "test"):
        if (loss := seen["finals"].get(split)) is None:
            splits = splits or make_splits(words, config.block_size)
            loss = split_loss(model, splits, split)
        print(f"{split:5s} loss {loss:.4f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        state = torch.load(io.BytesIO(seen["checkpoint"]), weights_only=True)
        torch.save({"format": WEIGHTS_FORMAT, "config": config.model_dump(), "state": state}, args.out)
        print(f"weights saved to {args.out}")
    train_words = frozenset(split_words(words)[0])
    for row in sample_names(model, args.samples, block_size=config.block_size, seed=0, train_words=train_words):
        print(f"  {row['name']}" + ("" if row["novel"] else "   (in the training set)"))


WEIGHTS_FORMAT = "bnscope-weights-1"


class NotWeights(ValueError):
    """A file that is not bnscope weights; the message names the file and what was expected."""


def load_weights(path: Path):
    """(config, network in eval mode) saved by `bnscope train --out`."""
    import pickle

    import torch

    from bnscope.train.trainer import build_model

    expected = "expected a .pt file written by `bnscope train --out`"
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only
    except FileNotFoundError:
        raise NotWeights(f"{path}: no such file ({expected})") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as err:
        raise NotWeights(f"{path}: not bnscope weights ({expected}; {type(err).__name__})") from None
    if not isinstance(saved, dict) or "config" not in saved or "model" not in saved.get("state", {}):
        raise NotWeights(
            f"{path}: not bnscope weights ({expected}; it holds {type(saved).__name__} without config and state)"
        )
    config = RunConfig(**saved["config"])
    model = build_model(config, seed_init=False)
    model.load_state_dict(saved["state"]["model"])
    return config, model.eval()


def _sample(args: argparse.Namespace) -> int:
    from bnscope.train.sampling import sample_names

    config, model = load_weights(args.weights)
    train_words = frozenset(split_words(read_names(args.names))[0])
    rows = sample_names(
        model,
        args.n,
        block_size=config.block_size,
        temperature=args.temperature,
        prefix=args.prefix,
        seed=args.seed,
        max_len=args.max_len,
        train_words=train_words,
        one_at_a_time=args.one_at_a_time,
    )
    for row in rows:
        print(row["name"] + ("" if row["novel"] else "   (in the training set)"))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from bnscope.api.main import serve

    return serve(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        token=args.token,
        names=args.names,
        allowed_hosts=args.allowed_hosts,
        ray=args.ray,
    )


def _write_report(args: argparse.Namespace) -> int:
    """A report file straight from a data directory: no server, no worker."""
    from bnscope.config import Settings
    from bnscope.report import NoRuns, checkpoint_sampler, gather, render, select
    from bnscope.storage.store import Store, StoreError

    data_dir = args.data_dir or Settings().data_dir
    path = data_dir / "bnscope.sqlite3"
    if not path.exists():
        print(f"bnscope: no runs in {data_dir} (no bnscope.sqlite3 there): pass --data-dir", file=sys.stderr)
        return 2
    try:
        store = Store(path)
        run_ids = select(store, args.target)
        sampler = None if args.no_samples else checkpoint_sampler(store, read_names(args.names))
        view = {"max_points": args.max_points} if args.max_points else {}
        data = gather(store, run_ids, step=args.step, start=args.start, end=args.end, sampler=sampler, **view)
    except (NoRuns, StoreError) as err:
        print(f"bnscope: {err}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(data), encoding="utf-8")
    runs = f"{len(run_ids)} run{'s' if len(run_ids) > 1 else ''}"
    print(f"report of {runs} written to {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bnscope", description=__doc__)
    parser.add_argument("--version", action="version", version=f"bnscope {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (_add_train, _add_sample, _add_serve, _add_report):
        add(commands)
    return parser


def _add_train(commands) -> None:
    train = commands.add_parser("train", help="train the network in the terminal")
    _add_config_flags(train)
    train.add_argument("--names", type=Path, default=DEFAULT_NAMES, help="names file, one a-z name a line")
    train.add_argument("--out", type=Path, help="save the trained weights here (a .pt file)")
    train.add_argument("--samples", type=int, default=10, help="names to sample at the end")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for this small net)")
    train.set_defaults(func=_train)


def _add_sample(commands) -> None:
    sample = commands.add_parser("sample", help="sample names from saved weights")
    sample.add_argument("weights", type=Path, help="a .pt file written by `bnscope train --out`")
    sample.add_argument("-n", type=int, default=20, help="how many names")
    sample.add_argument("--temperature", type=float, default=1.0, help="<1 safer, >1 wilder")
    sample.add_argument("--prefix", default="", help="every name starts with these letters")
    sample.add_argument("--seed", type=int, default=None, help="same seed, same names")
    sample.add_argument("--max-len", type=int, default=30, help="longest name, in characters")
    sample.add_argument(
        "--one-at-a-time", action="store_true", help="each name to its end before the next, as the lecture's last cell"
    )
    sample.add_argument("--names", type=Path, default=DEFAULT_NAMES, help="names file the weights were trained on")
    sample.set_defaults(func=_sample)


def _add_serve(commands) -> None:
    serve = commands.add_parser("serve", help="run the dashboard (trains the default network at once)")
    serve.add_argument("--host", default=None, help="address to bind (default 127.0.0.1; others need --token)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8000)")
    serve.add_argument("--data-dir", type=Path, default=None, help="where runs are kept (default ~/.bnscope)")
    serve.add_argument("--token", default=None, help="access token required by the API (env BNSCOPE_TOKEN)")
    serve.add_argument("--names", type=Path, default=None, help="names file to train on")
    serve.add_argument(
        "--ray",
        default=None,
        metavar="ADDRESS",
        help="train each run as a Ray actor: a Ray cluster's address, or 'local' for a private local Ray "
        "(env BNSCOPE_RAY; needs the extra: pip install 'bnscope[ray]')",
    )
    serve.add_argument(
        "--allowed-hosts",
        default=None,
        metavar="NAMES",
        help="comma-separated host names the server answers to besides localhost and its bound "
        "address, e.g. the name a proxy serves it under (env BNSCOPE_ALLOWED_HOSTS)",
    )
    serve.set_defaults(func=_serve)


def _add_report(commands) -> None:
    report = commands.add_parser("report", help="write a run, some runs or a sweep as one HTML file that opens offline")
    report.add_argument("target", help="a run id (3), run ids (1,2,5), or sweeps (sweep:2, sweep:2,3)")
    report.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    report.add_argument("--data-dir", type=Path, default=None, help="where the runs are kept (default ~/.bnscope)")
    report.add_argument("--step", type=int, default=None, help="histograms and health here (default: newest)")
    report.add_argument("--start", type=int, default=0, help="first step of the charts")
    report.add_argument("--end", type=int, default=None, help="the step after the charts' last")
    report.add_argument("--max-points", type=int, default=None, help="points a series at most (default 1000)")
    report.add_argument("--names", type=Path, default=DEFAULT_NAMES, help="names file the runs trained on")
    report.add_argument("--no-samples", action="store_true", help="leave samples out (no torch needed)")
    report.set_defaults(func=_write_report)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValidationError as err:
        print(f"bnscope: invalid settings:\n{describe_errors(err)}", file=sys.stderr)
    except (NamesFileError, NotWeights, ValueError, FileNotFoundError) as err:
        print(f"bnscope: {err}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
