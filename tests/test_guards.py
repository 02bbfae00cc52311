"""Guards a refactor must not slip past: the README's main job runs as written, and the shipped
perov_5 diffusion checkpoint still predicts structures (a sampler that silently breaks a model
drops its match rate to ~0)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from conftest import cli_in_process, read_rows

ROOT = Path(__file__).resolve().parents[1]
#: Test rows of perov_5 the quality guard predicts: the first ones of the split file.
GUARD_STRUCTURES = 50
#: k=1 match-rate floor on them. The checkpoint scores 66% on these 50 (seed 0; 54.87% on the full
#: split); with n=50 the binomial standard error is ~7 points, so 45% is ~3 SE below.
GUARD_FLOOR = 0.45


def readme_main_job() -> list[str]:
    """The arguments of the README's main-job `crystalgen sample` command (after its set-up part)."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)\n```", readme, re.DOTALL)
    assert block, "the README has no bash block"
    command = block.group(1).strip().split("&&")[-1].strip()
    words = shlex.split(command)
    assert words[0].endswith("crystalgen") and words[1] == "sample", command
    return words[1:]


def test_the_readme_main_job_runs(tmp_path, monkeypatch):
    args = readme_main_job()
    monkeypatch.chdir(tmp_path)
    result = cli_in_process(args)
    assert result.returncode == 0, result.stderr
    out = tmp_path / args[args.index("--out") + 1]
    rows = read_rows(out / "samples.csv")
    compositions = [args[i + 1] for i, a in enumerate(args) if a in ("-c", "--composition")]
    per_target = int(args[args.index("-n") + 1])
    assert len(rows) == len(compositions) * per_target
    assert len(list((out / "cifs").glob("*.cif"))) == len(rows)


def test_the_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = re.findall(r"```bash\n(.*?)\n```", readme, re.DOTALL)[1].strip()
    assert test_command in ci


@pytest.mark.data
def test_shipped_perov_5_diffusion_keeps_its_match_rate(data_dir):
    from crystalgen.data import load_split
    from crystalgen.generators import Target, load_model
    from crystalgen.metrics.csp import csp_rms_matrix

    test = load_split("perov_5", "test", data_dir)[:GUARD_STRUCTURES]
    model = load_model("diffusion-perov_5")
    predictions = model.sample([Target.from_crystal(c) for c in test], n=1, seed=0)
    result = csp_rms_matrix(test, predictions, k=1, workers=1).result(1)
    assert result.match_rate >= GUARD_FLOOR, f"k=1 match rate {result.match_rate:.2%} on {len(test)} perov_5 test rows"
