import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import torch
import torch.nn.functional as F

from bnscope import __version__
from bnscope.cli import load_weights, main
from bnscope.config import RunConfig
from tests.servers import ctrl_c_as_in_a_terminal, wait_for

TINY_FLAGS = ["--n-hidden", "16", "--n-layers", "2", "--steps", "150", "--dev-every", "1000", "--quiet"]


@pytest.fixture(autouse=True)
def keep_torch_threads(monkeypatch):
    """main() sets torch's thread count for the whole process (--threads): put it back after.
    And a wide terminal, so argparse's help keeps each option on one line."""
    threads = torch.get_num_threads()
    monkeypatch.setenv("COLUMNS", "1000")
    yield
    torch.set_num_threads(threads)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def help_text(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


@pytest.fixture
def weights(tmp_path, names_file, capsys):
    path = tmp_path / "tiny.pt"
    code, out, err = run_cli(capsys, "train", "--names", names_file, "--out", path, "--samples", "3", *TINY_FLAGS)
    assert code == 0, err
    return path, out


def test_help_lists_the_commands(capsys):
    text = help_text(capsys)
    for command in ("train", "sample", "serve"):
        assert command in text


def test_sample_help_lists_its_options(capsys):
    text = help_text(capsys, "sample")
    for option in ("-n", "--temperature", "--prefix", "--seed", "--max-len", "--names"):
        assert f"  {option} " in text, option


def test_train_help_lists_every_knob_with_its_help_line(capsys):
    text = " ".join(help_text(capsys, "train").split())  # argparse may put a help on the flag's next line
    for name, field in RunConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        usage = f"{flag}, --no-{flag[2:]}" if field.annotation is bool else f"{flag} {name.upper()}"
        assert f"{usage} {field.description} (default: " in text, name


def test_train_writes_weights_and_prints_the_final_losses(weights, splits):
    path, out = weights
    assert path.exists()
    assert "finished at step 150" in out
    config, model = load_weights(path)
    assert (config.n_hidden, config.n_layers, config.steps) == (16, 2, 150)
    with torch.no_grad():
        for split in ("train", "dev", "test"):
            X, Y = splits.split(split)
            assert f"{split:5s} loss {F.cross_entropy(model(X), Y).item():.4f}" in out
    assert len([line for line in out.splitlines() if line.startswith("  ")]) == 3  # --samples 3


def test_sample_prints_n_names_and_the_same_names_for_the_same_seed(weights, names_file, splits, capsys):
    path, _ = weights
    code, out, _ = run_cli(capsys, "sample", path, "-n", 12, "--seed", 7, "--names", names_file)
    _, again, _ = run_cli(capsys, "sample", path, "-n", 12, "--seed", 7, "--names", names_file)
    _, other, _ = run_cli(capsys, "sample", path, "-n", 12, "--seed", 8, "--names", names_file)

    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 12
    assert out == again and out != other
    for line in lines:
        name, marked = line.removesuffix("   (in the training set)"), line.endswith("(in the training set)")
        assert name.isalpha() or name == ""
        assert marked == (name in splits.train_words)


def test_sample_with_a_prefix(weights, names_file, capsys):
    path, _ = weights
    code, out, _ = run_cli(capsys, "sample", path, "-n", 5, "--prefix", "ma", "--seed", 0, "--names", names_file)
    assert code == 0
    assert all(line.startswith("ma") for line in out.splitlines())


@pytest.mark.parametrize(
    "flags, field",
    [
        (["--gain", "-1"], "gain"),
        (["--n-layers", "0"], "n_layers"),
        (["--n-hidden", "5000"], "n_hidden"),
        (["--batch-size", "1"], "batch_size"),
    ],
)
def test_train_refuses_out_of_range_values_naming_the_field(capsys, names_file, flags, field):
    code, _, err = run_cli(capsys, "train", "--names", names_file, *flags)
    assert code == 2
    assert "invalid settings" in err and field in err


@pytest.mark.parametrize("flags", [["--n-hidden", "many"], ["--init", "xavier"], ["--lr", "fast"]])
def test_train_refuses_malformed_values_naming_the_flag(capsys, flags):
    with pytest.raises(SystemExit) as exit_:
        main(["train", *flags])
    assert exit_.value.code == 2
    assert flags[0] in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, expected",
    [("emma\nAva\n", "line 2"), ("", "no names found"), ("\n  \n\n", "no names found")],
    ids=["bad-character", "empty", "blank-lines-only"],
)
def test_train_on_a_bad_names_file_prints_the_error_and_exits_2(capsys, tmp_path, text, expected):
    names = tmp_path / "names.txt"
    names.write_text(text)
    code, _, err = run_cli(capsys, "train", "--names", names, *TINY_FLAGS)
    assert code == 2
    assert err.startswith("bnscope: ") and expected in err and str(names) in err


def test_train_on_a_missing_names_file_exits_2(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--names", tmp_path / "nowhere.txt", *TINY_FLAGS)
    assert code == 2
    assert "cannot read names file" in err


def test_sample_from_missing_weights_exits_2(capsys, tmp_path, names_file):
    code, _, err = run_cli(capsys, "sample", tmp_path / "nowhere.pt", "--names", names_file)
    assert code == 2
    assert "nowhere.pt" in err


# ---- the command as a user runs it ---------------------------------------------------------------


def bnscope(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bnscope.cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"bnscope {__version__}"


def test_help_does_not_load_torch():
    """--help answers at once: torch (seconds to import) loads only for a command that trains or samples."""
    code = "import sys; from bnscope.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_ctrl_c_during_train_stops_between_steps_saves_and_exits_130(tmp_path, names_file):
    out = tmp_path / "w.pt"
    process = bnscope(
        "train",
        "--names",
        names_file,
        "--out",
        out,
        "--n-hidden",
        16,
        "--n-layers",
        2,
        "--steps",
        10_000_000,
        "--dev-every",
        1_000_000,
        preexec_fn=ctrl_c_as_in_a_terminal,
    )
    progress = []  # the bar, read as it is drawn: Ctrl-C comes once steps are under way
    reader = threading.Thread(target=lambda: progress.extend(iter(lambda: process.stderr.read(1), "")), daemon=True)
    reader.start()
    wait_for(lambda: "steps/s" in "".join(progress) or process.poll() is not None, timeout=120, every=0.1)
    process.send_signal(signal.SIGINT)
    stdout = process.stdout.read()
    process.wait(timeout=60)
    reader.join(10)
    stderr = "".join(progress)
    assert process.returncode == 130, stderr
    step = int(re.search(r"^stopped at step (\d+)$", stdout, re.M).group(1))
    assert step > 0 and "Traceback" not in stderr
    from bnscope.cli import load_weights

    config, model = load_weights(out)
    assert config.steps == 10_000_000 and f"weights saved to {out}" in stdout


def test_a_file_that_is_not_weights_is_one_line_naming_it(tmp_path, names_file, capsys):
    for content in (b"# a README\n", b"", b"\x80\x02}q\x00."):  # text, empty, a pickle that is not weights
        path = tmp_path / "not-weights.pt"
        path.write_bytes(content)
        code, _, err = run_cli(capsys, "sample", path, "--names", names_file)
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert str(path) in err and "bnscope train --out" in err and "Traceback" not in err


def test_a_busy_port_is_reported_before_anything_is_written(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        data = tmp_path / "data"
        result = subprocess.run(
            [sys.executable, "-m", "bnscope.cli", "serve", "--port", str(port), "--data-dir", str(data)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"127.0.0.1:{port}" in result.stderr and "in use" in result.stderr.lower()
    assert "dashboard on" not in result.stdout
    assert not data.exists() or not any(data.iterdir())  # no database, so no phantom run either


@pytest.mark.slow
def test_the_eta_comes_from_the_measured_speed(tmp_path, names_file):
    """The first ETA shown is close to how long the run really takes from there (no guess from the
    slow first steps), and no ETA is shown before steps/s is measured."""
    steps = 6000
    started = time.monotonic()
    process = bnscope(
        "train",
        "--names",
        names_file,
        "--n-hidden",
        16,
        "--n-layers",
        2,
        "--steps",
        steps,
        "--dev-every",
        1_000_000,
        "--stats-every",
        1_000_000,
        env={**os.environ, "COLUMNS": "200"},
    )
    _, stderr = process.communicate(timeout=300)
    total = time.monotonic() - started
    assert process.returncode == 0
    frames = re.findall(r"(\d+)/6000 \[[^\]]*eta ([^,]+), (\d+) steps/s", stderr.replace("\r", "\n"))
    shown = [(int(n), eta, int(rate)) for n, eta, rate in frames if eta != "…"]
    assert shown and all(rate > 0 for _, _, rate in shown)
    n, eta, rate = shown[0]
    seconds = sum(int(v) * {"h": 3600, "m": 60, "s": 1}[u] for v, u in re.findall(r"(\d+)([hms])", eta))
    assert seconds == pytest.approx((steps - n) / rate, abs=1.5)
    assert seconds < 3 * total + 2  # the old bar said hours for a run of seconds
