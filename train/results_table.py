"""The README results table and the model cards' benchmark numbers, from `srtool eval` CSV files.

    for x in 2 4; do for s in Set5 Set14 BSD100; do
      srtool eval -m pixel -m msssim -m perceptual --data ../shared/data/$s -x $x \\
          --metrics psnr_y,ssim_y,ms_ssim,st_lpips,st_lpips_vgg,artifact --csv evals/eval_${s}_x$x.csv
    done; done
    # degraded LR (a set named <Set>-<kind> at scale s reads --lr evals/lr/<Set>_x<s>_<kind>, made by srtool make-lr)
    srtool make-lr ../shared/data/BSD100 evals/lr/BSD100_x4_jpeg75 -x 4 --jpeg 75
    srtool eval -m pixel -m photo --data ../shared/data/BSD100 --lr evals/lr/BSD100_x4_jpeg75 -x 4 \\
        --metrics psnr_y,st_lpips,st_lpips_vgg,artifact --csv evals/eval_BSD100-jpeg75_x4.csv
    python train/results_table.py evals --cards models

Files ``eval_<set>_x<scale>_<anything>.csv`` add models to ``eval_<set>_x<scale>.csv`` (e.g. a model
scored later on its own).

Prints a Markdown table (means over each set's images, as `srtool eval` prints them; the artifact
check's median; ``*`` marks a judge whose network the model's loss trained on, read from its card in
``--cards``, default ``models``) and, with
``--cards``, writes them into the cards of the shipped models (``<name>_x<s>.json``: ``benchmarks``),
with the command that produced them.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from sr_tool.evaluate import judges_trained_on, read_csv, summarise

SETS = ("Set5", "Set14", "BSD100")
COLUMNS = {"psnr_y": ("PSNR-Y", 2), "ssim_y": ("SSIM-Y", 4), "ms_ssim": ("MS-SSIM", 5), "st_lpips": ("ST-LPIPS", 4),
           "st_lpips_vgg": ("ST-LPIPS (VGG)", 4), "lpips_alex": ("LPIPS (alex)", 4), "lpips_vgg": ("LPIPS (VGG)", 4),
           "artifact": ("artifact", 2)}  # fmt: skip

def command(set_name: str, scale: int, models: list[str], metrics: list[str]) -> str:
    """The ``srtool eval`` command line that scores ``models`` on a set as this table names it."""
    base, _, kind = set_name.partition("-")
    lr = f" --lr evals/lr/{base}_x{scale}_{kind}" if kind else ""
    return (f"srtool eval {' '.join(f'-m {m}' for m in models)} --data ../shared/data/{base}{lr} -x {scale} "
            f"--metrics {','.join(metrics)}")  # fmt: skip


def read_means(folder: Path) -> dict[tuple[str, int], dict[str, dict[str, float]]]:
    """(set, scale) -> model -> metric -> mean, from eval_<set>_x<scale>.csv files."""
    results: dict = {}
    for path in sorted(folder.glob("eval_*_x*.csv")):
        match = re.fullmatch(r"eval_(.+?)_x(\d+)(_.+)?\.csv", path.name)
        table = summarise(read_csv(path))
        results.setdefault((match[1], int(match[2])), {}).update({
            model: {m: v for m, v in means.items() if v is not None} for model, means in table.items()
        })  # fmt: skip
    return results


def markdown(results, cards: Path = Path("models")) -> str:
    metrics = [m for m in COLUMNS if any(m in row for table in results.values() for row in table.values())]
    lines = ["| set | scale | model | " + " | ".join(COLUMNS[m][0] for m in metrics) + " |",
             "| --- | --- | --- |" + " --- |" * len(metrics)]  # fmt: skip
    order = sorted(results, key=lambda k: ("-" in k[0], SETS.index(k[0].split("-")[0]) if k[0].split("-")[0] in SETS else 99, k[1], k[0]))
    for set_name, scale in order:
        for model, means in results[(set_name, scale)].items():
            trained = judges_trained_on(cards / f"{model}_x{scale}.onnx")
            cells = [f"{means[m]:.{COLUMNS[m][1]}f}" + ("*" if m in trained else "") if m in means else "-"
                     for m in metrics]  # fmt: skip
            lines.append(f"| {set_name} | x{scale} | {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_cards(results, cards: Path) -> list[Path]:
    written = []
    for (set_name, scale), table in results.items():
        for model, means in table.items():
            card_path = cards / f"{model}_x{scale}.json"
            if model == "bicubic" or not card_path.is_file():
                continue
            card = json.loads(card_path.read_text())
            models = [m for m in table if m != "bicubic"]
            card.setdefault("benchmarks", {})[set_name] = {**{m: round(v, 5) for m, v in means.items()},
                                                           "command": command(set_name, scale, models, list(means))}  # fmt: skip
            card_path.write_text(json.dumps(card, indent=2) + "\n")
            written.append(card_path)
    return sorted(set(written))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="folder of eval_<set>_x<scale>.csv files")
    parser.add_argument("--cards", type=Path, help="folder of model cards to update (models/)")
    args = parser.parse_args()
    results = read_means(args.folder)
    print(markdown(results, args.cards or Path("models")))
    if args.cards:
        for path in write_cards(results, args.cards):
            print(f"updated {path}")


if __name__ == "__main__":
    main()
