"""``crystalgen train`` for the diffusion family, what its checkpoint folder serves (``sample``,
``benchmark csp`` with ``--sampler-steps`` / ``--steps-curve``), and ``figures.line_plot``.

The full train -> sample -> benchmark path runs in-process on the fake perov_5 of
``synthetic_perov_dir`` (five training perovskites, four test structures), so it runs without the
benchmark data and in seconds. Parsing the real perov_5 training split alone takes about a minute
on a small machine; the one test on real data (``data_dir``, skipped without it) therefore trains
on the smaller carbon_24 val-trained protocol.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from conftest import assert_one_line_error, cli_in_process, isolated_cache, read_rows, run_main

torch.set_num_threads(1)

TINY_MODEL = {"hidden": 16, "layers": 1, "fourier_frequencies": 2, "time_dim": 8}
SAMPLER_STEPS = 2


def diffusion_config(protocol: str = "perov_5", steps: int = 2, **overrides) -> dict:
    config = {
        "name": "tiny-diffusion",
        "family": "diffusion",
        "task": "csp",
        "protocol": protocol,
        "model": dict(TINY_MODEL),
        "training": {"steps": steps, "batch_size": 8, "log_every": 1},
        "sampling": {"steps": SAMPLER_STEPS},
    }
    config.update(overrides)
    return config


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def train_args(config: Path, out: Path, data: Path, *extra: str) -> list[str]:
    return ["train", "--config", str(config), "--out", str(out), "--data-dir", str(data), *extra]


@pytest.fixture(scope="module")
def trained(synthetic_perov_dir, tmp_path_factory) -> Path:
    """A tiny diffusion checkpoint trained by ``crystalgen train`` on the fake perov_5 (read-only)."""
    root = tmp_path_factory.mktemp("train")
    config = write_config(root / "tiny.yaml", diffusion_config())
    out = root / "run"
    with isolated_cache(tmp_path_factory.mktemp("train-cache")):
        result = cli_in_process(train_args(config, out, synthetic_perov_dir))
    assert result.returncode == 0, result.stderr
    assert "continue with" not in result.stderr
    return out


# ------------------------------------------------------------------------------ train: the checkpoint folder
def test_train_writes_a_checkpoint_folder(trained):
    for name in ("model.safetensors", "config.yaml", "card.md", "metrics.csv", "train_state.safetensors"):
        assert (trained / name).is_file(), name
    assert not list(trained.glob("*.pt")) and not list(trained.glob("*.pkl"))
    config = yaml.safe_load((trained / "config.yaml").read_text())
    assert config["family"] == "diffusion" and config["task"] == "csp"
    assert config["protocol"] == "perov_5" and config["dataset"] == "perov_5"
    assert config["max_atoms"] == 5
    assert config["sampling"]["steps"] == SAMPLER_STEPS
    assert [int(r["step"]) for r in read_rows(trained / "metrics.csv")] == [1, 2]


def test_train_card_describes_the_run(trained):
    card = (trained / "card.md").read_text()
    assert card.startswith("# tiny-diffusion")
    assert "2 of 2 steps (finished)" in card
    assert "Training throughput:" in card and "structures/s" in card
    assert "5 training structures" in card
    assert "## Training curve" in card and "| step |" in card
    assert f"{SAMPLER_STEPS} steps" in card
    assert "unfinished" not in card


def test_sample_from_the_trained_checkpoint(trained, synthetic_perov_dir, tmp_path, capsys):
    out = tmp_path / "samples"
    result = run_main(["sample", "--model", str(trained), "-c", "SrTiO3", "-n", "2", "--out", str(out),
                       "--data-dir", str(synthetic_perov_dir)], capsys)
    assert result.returncode == 0, result.stderr
    rows = read_rows(out / "samples.csv")
    assert len(rows) == 2
    from pymatgen.core import Composition

    for row in rows:
        assert Composition(row["target"]) == Composition("SrTiO3")
        assert row["num_atoms"] == "5"
        assert Composition(row["formula"]) == Composition("SrTiO3")
    assert len(list((out / "cifs").glob("*.cif"))) == 2


def test_sample_refuses_cells_beyond_the_training_size(trained, synthetic_perov_dir, tmp_path, capsys):
    result = run_main(["sample", "--model", str(trained), "-c", "Na4Cl4", "--out", str(tmp_path / "s"),
                       "--data-dir", str(synthetic_perov_dir)], capsys)
    assert_one_line_error(result, "8 atoms", "limit of 5")


# ------------------------------------------------------------------------------ train: user errors
def test_train_again_into_a_run_folder_needs_resume(trained, synthetic_perov_dir, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    config = write_config(tmp_path / "tiny.yaml", diffusion_config())
    before = (out / "model.safetensors").read_bytes()
    result = run_main(train_args(config, out, synthetic_perov_dir), capsys)
    assert_one_line_error(result, "--resume")
    assert (out / "model.safetensors").read_bytes() == before


def test_train_user_errors(synthetic_perov_dir, tmp_path, capsys):
    good = write_config(tmp_path / "good.yaml", diffusion_config())
    empty = tmp_path / "empty-run"
    empty.mkdir()
    assert_one_line_error(run_main(train_args(good, empty, synthetic_perov_dir, "--resume"), capsys), "--resume")
    assert not (empty / "model.safetensors").exists()

    missing = tmp_path / "nope.yaml"
    assert_one_line_error(run_main(train_args(missing, tmp_path / "o1", synthetic_perov_dir), capsys),
                          "file not found", "nope.yaml")

    unknown = write_config(tmp_path / "unknown.yaml", diffusion_config(family="transformer"))
    assert_one_line_error(run_main(train_args(unknown, tmp_path / "o2", synthetic_perov_dir), capsys),
                          "unknown model family", "transformer")

    broken = tmp_path / "broken.yaml"
    broken.write_text("family: diffusion\nmodel: {hidden: [16\n")
    assert_one_line_error(run_main(train_args(broken, tmp_path / "o3", synthetic_perov_dir), capsys),
                          "not valid YAML")

    no_protocol = diffusion_config()
    del no_protocol["protocol"]
    config = write_config(tmp_path / "noprotocol.yaml", no_protocol)
    assert_one_line_error(run_main(train_args(config, tmp_path / "o4", synthetic_perov_dir), capsys), "protocol")

    bogus = write_config(tmp_path / "bogus.yaml", diffusion_config(training={"steps": 2, "bogus": 1}))
    assert_one_line_error(run_main(train_args(bogus, tmp_path / "o5", synthetic_perov_dir), capsys), "bogus")

    bad_protocol = write_config(tmp_path / "badprotocol.yaml", diffusion_config(protocol=["perov_5"]))
    assert_one_line_error(run_main(train_args(bad_protocol, tmp_path / "o6", synthetic_perov_dir), capsys),
                          "badprotocol.yaml", "protocol")

    template = write_config(tmp_path / "template.yaml", {"family": "template", "protocol": "perov_5"})
    assert_one_line_error(run_main(train_args(template, tmp_path / "o7", synthetic_perov_dir, "--bf16"), capsys),
                          "--bf16", "not trained by gradient descent")

    import torch

    if not torch.cuda.is_available():
        assert_one_line_error(run_main(train_args(good, tmp_path / "o8", synthetic_perov_dir, "--device", "cuda"),
                                       capsys), "no CUDA device")

    for name in ("o1", "o2", "o3", "o4", "o5", "o6", "o7", "o8"):
        assert not (tmp_path / name / "model.safetensors").exists()


@pytest.mark.parametrize("text", ["- family: diffusion\n", "just a string\n"])
def test_train_config_that_is_not_a_mapping_is_a_user_error(text, synthetic_perov_dir, tmp_path, capsys):
    config = tmp_path / "list.yaml"
    config.write_text(text)
    from crystalgen.cli import main

    capsys.readouterr()
    try:
        main(train_args(config, tmp_path / "out", synthetic_perov_dir))
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert captured.err.startswith("crystalgen: error: ")


# ------------------------------------------------------------------------------ train: time limit and resume
def test_time_limit_then_resume(synthetic_perov_dir, tmp_path, capsys, monkeypatch):
    import sys

    train_module = sys.modules["crystalgen.cli.train"]  # the package's ``train`` attribute is the click command
    # --time-limit is in minutes with a floor of 0.1 (6 s); shrink the minute so the limit hits at once.
    monkeypatch.setattr(train_module, "SECONDS_PER_MINUTE", 1e-3)
    config = write_config(tmp_path / "long.yaml", diffusion_config(steps=3))
    out = tmp_path / "run"
    first = run_main(train_args(config, out, synthetic_perov_dir, "--time-limit", "0.1"), capsys)
    assert first.returncode == 0, first.stderr
    assert "continue with" in first.stderr and "--resume" in first.stderr and str(out) in first.stderr
    card = (out / "card.md").read_text()
    assert "**unfinished**" in card and "of 3 steps" in card
    assert (out / "train_state.safetensors").is_file()

    second = run_main(train_args(config, out, synthetic_perov_dir, "--resume", "--threads", "1"), capsys)
    assert second.returncode == 0, second.stderr
    assert "continue with" not in second.stderr
    card = (out / "card.md").read_text()
    assert "3 of 3 steps (finished)" in card and "unfinished" not in card
    assert int(read_rows(out / "metrics.csv")[-1]["step"]) == 3


# ------------------------------------------------------------------------------ benchmark: sampler steps
def csp_args(model: str | Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["benchmark", "csp", "--model", str(model), "--dataset", "perov_5", "--data-dir", str(data),
            "--out", str(out), "--workers", "1", *extra]


def test_benchmark_steps_curve(trained, synthetic_perov_dir, tmp_path, capsys):
    out = tmp_path / "bench"
    result = run_main(csp_args(trained, synthetic_perov_dir, out, "--limit", "4", "--steps-curve", "2,3",
                               "--curve-limit", "3"), capsys)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 4
    assert metrics["targets_refused_by_model"] == 1  # te-NaCl: 8 atoms, beyond the 5-atom training cells
    curve = metrics["steps_curve"]
    assert [p["steps"] for p in curve] == [2, 3]
    assert all(p["n"] == 3 for p in curve)
    assert all(0.0 <= p["match_rate"] <= 1.0 for p in curve)
    assert all(p["predict_s"] > 0 for p in curve)
    report = (out / "report.md").read_text()
    assert "Match rate against sampler steps" in report
    assert (out / "figures" / "steps_curve.png").read_bytes().startswith(b"\x89PNG")
    for steps in (2, 3):
        sub = json.loads((out / "steps_curve" / f"steps-{steps}" / "metrics.json").read_text())
        assert sub["n"] == 3 and sub["k"] == 1
        assert f"steps={steps}," in sub["metadata"]["settings"]["sampler"]
    main_sampler = metrics["metadata"]["settings"]["sampler"]
    assert f"steps={SAMPLER_STEPS}," in main_sampler


def test_benchmark_sampler_steps_override(trained, synthetic_perov_dir, tmp_path, capsys):
    out = tmp_path / "bench"
    result = run_main(csp_args(trained, synthetic_perov_dir, out, "--limit", "2", "--sampler-steps", "4"), capsys)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert "steps=4," in metrics["metadata"]["settings"]["sampler"]
    assert metrics["steps_curve"] == []
    assert "Match rate against sampler steps" not in (out / "report.md").read_text()


@pytest.mark.parametrize("curve", ["0", "a,b", "2,-1"])
def test_bad_steps_curve_is_a_usage_error(curve, trained, synthetic_perov_dir, tmp_path, capsys):
    out = tmp_path / "bench"
    result = run_main(csp_args(trained, synthetic_perov_dir, out, "--steps-curve", curve), capsys)
    assert_one_line_error(result, "--steps-curve")
    assert not out.exists()


def test_sampler_steps_on_a_template_model_is_refused(synthetic_perov_dir, tmp_path, capsys):
    out = tmp_path / "bench"
    result = run_main(csp_args("template-perov_5", synthetic_perov_dir, out, "--limit", "2", "--sampler-steps", "2"),
                      capsys)
    assert_one_line_error(result, "no sampler steps")
    assert not (out / "predictions.csv").exists()


# ------------------------------------------------------------------------------ figures
def test_line_plot_returns_png_bytes():
    from crystalgen.reports import figures

    png = figures.line_plot([10, 100, 1000], [12.5, 40.0, 41.0], "sampler steps", "match rate (%)", log_x=True)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    linear = figures.line_plot([1, 2], [0.0, 1.0], "x", "y")
    assert linear.startswith(b"\x89PNG") and linear != png


# ------------------------------------------------------------------------------ real data
def test_train_and_sample_on_real_data(data_dir, tmp_path, capsys):
    """Two training steps on the carbon_24 val-trained protocol from the real data directory."""
    config = write_config(tmp_path / "carbon.yaml", diffusion_config(protocol="carbon_24_val_trained", steps=1))
    out = tmp_path / "run"
    result = run_main(train_args(config, out, data_dir, "--threads", "1"), capsys)
    assert result.returncode == 0, result.stderr
    for name in ("model.safetensors", "config.yaml", "card.md", "metrics.csv", "train_state.safetensors"):
        assert (out / name).is_file(), name
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["protocol"] == "carbon_24_val_trained" and saved["dataset"] == "carbon_24"
    assert saved["max_atoms"] == 24
    card = (out / "card.md").read_text()
    assert "carbon_24 (val-trained)" in card and "1 of 1 steps (finished)" in card

    samples = tmp_path / "samples"
    result = run_main(["sample", "--model", str(out), "-c", "C6", "-n", "2", "--out", str(samples)], capsys)
    assert result.returncode == 0, result.stderr
    rows = read_rows(samples / "samples.csv")
    assert len(rows) == 2 and all(r["num_atoms"] == "6" for r in rows)
