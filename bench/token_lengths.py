"""Figure of the encoded-length distribution per dataset, from ``bench/roundtrip.py`` results.

    python bench/token_lengths.py docs/reports/cif-tokens/roundtrip-*.json \
        --representation cif-tokens --out docs/reports/cif-tokens/token_lengths.png

Each input is one round-trip JSON (one dataset split); its ``encoded_length`` histogram of the
chosen representation is drawn as a step line, labelled with the dataset, split, median and maximum.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path)
    parser.add_argument("--representation", default="cif-tokens")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    figure, axes = plt.subplots(figsize=(7, 4))
    for path in args.inputs:
        results = json.loads(path.read_text())
        lengths = results["results"][args.representation]["encoded_length"]
        width = lengths["bin"]
        edges = list(range(0, max(int(k) for k in lengths["histogram"]) + 2 * width, width))
        counts = [lengths["histogram"].get(str(k), 0) for k in edges]  # empty bins are left out of the JSON
        total = sum(counts)
        meta = results["meta"]
        axes.step(edges, [c / total for c in counts], where="post",
                  label=f"{meta['dataset']} {meta['split']} (n={meta['n']:,}; median {lengths['median']:.0f}, "
                        f"max {lengths['max']})")
    axes.set_xlabel(f"{args.representation} per crystal (bins of {lengths['bin']})")
    axes.set_ylabel("share of crystals")
    axes.legend(fontsize=8)
    axes.set_title(f"Sequence lengths, {args.representation}")
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
