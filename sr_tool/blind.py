"""A blind pairwise test of two models, the kind that decides whether people prefer one (issue #10).

:func:`write_blind_test` draws images at random and, for each, shows the window where the two
models' outputs differ most as ``A | ground truth | B``, the sides shuffled. The judge sees only
``pairs/`` and fills ``answers.csv`` with A or B (which is closer to the ground truth); the sides
stay in ``key.csv`` until :func:`score_blind_test` reads both.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sr_tool.evaluate import Pair, hr_pixels, most_different_box, zoomed_strip
from sr_tool.files import atomic_output
from sr_tool.image_io import write_image

KEY_FIELDS = ["pair", "image", "x", "y", "size", "A", "B"]


@dataclass(frozen=True)
class BlindScore:
    """How often the judge picked each model; ``p_value``: the two-sided exact binomial test of a
    preference, over the answered pairs (1.0 when none were)."""

    wins: dict[str, int]
    unanswered: int

    @property
    def answered(self) -> int:
        return sum(self.wins.values())

    @property
    def p_value(self) -> float:
        n, low = self.answered, min(self.wins.values(), default=0)
        tail = sum(math.comb(n, k) for k in range(low + 1)) / 2**n
        return min(1.0, 2 * tail)


def check_new_test_folder(folder: str | Path) -> None:
    """Refuse a folder that already holds a blind test: writing there would lose its key."""
    if (Path(folder) / "key.csv").exists():
        raise ValueError(f"{folder}: already holds a blind test (key.csv); give another folder")


def write_blind_test(
    outputs: dict[str, dict[str, np.ndarray]],
    pairs: Sequence[Pair],
    first: str,
    second: str,
    folder: str | Path,
    *,
    count: int = 20,
    size: int = 96,
    zoom: int = 3,
    seed: int = 0,
) -> int:
    """Write ``folder/pairs/pair-NN.png`` (for ``count`` images drawn at random with ``seed``: the
    ``size`` px window where ``first`` and ``second`` differ most, ``zoom`` times enlarged,
    nearest neighbour), ``folder/answers.csv`` for the judge and ``folder/key.csv`` (which model is
    A). ``outputs[model][image]`` are HxWxC uint8 outputs, as :func:`sr_tool.evaluate.evaluate`
    returns them. A folder that already holds a key is refused: its test would be lost. Returns the
    number of pairs written."""
    folder = Path(folder)
    for name in (first, second):
        if name not in outputs:
            raise ValueError(f"blind test: {name!r} is not one of the models scored ({', '.join(outputs)})")
    check_new_test_folder(folder)
    rng = random.Random(seed)
    chosen = rng.sample(list(pairs), min(count, len(pairs)))
    (folder / "pairs").mkdir(parents=True, exist_ok=True)
    key = []
    for number, pair in enumerate(chosen, 1):
        x, y, side, _ = most_different_box(outputs[first][pair.name], outputs[second][pair.name], size)
        a, b = (first, second) if rng.random() < 0.5 else (second, first)
        panels = (("A", outputs[a][pair.name]), ("ground truth", hr_pixels(pair)), ("B", outputs[b][pair.name]))
        name = f"pair-{number:02d}"
        write_image(folder / "pairs" / f"{name}.png", zoomed_strip(panels, (x, y, side), zoom, gap=12))
        key.append({"pair": name, "image": pair.name, "x": x, "y": y, "size": side, "A": a, "B": b})
    _write_rows(folder / "answers.csv", ["pair", "choice"], [{"pair": row["pair"], "choice": ""} for row in key])
    with atomic_output(folder / "pairs" / "judge.html") as tmp:
        tmp.write_text(_judge_page([row["pair"] for row in key]))
    _write_rows(folder / "key.csv", KEY_FIELDS, key)
    return len(key)


def _judge_page(names: list[str]) -> str:
    """A page for people who judge in a browser: each pair with an A / B choice, and a button that
    saves answers.csv (the key is not in it)."""
    rows = "\n".join(
        f'<figure><img src="{n}.png" alt="{n}"><figcaption>{n}: closer to the ground truth is '
        f'<label><input type="radio" name="{n}" value="A"> A</label> '
        f'<label><input type="radio" name="{n}" value="B"> B</label></figcaption></figure>'
        for n in names
    )
    return f"""<!doctype html>
<meta charset="utf-8"><title>Blind test</title>
<style>body{{font-family:sans-serif;margin:2em}} img{{image-rendering:pixelated;max-width:100%}}
figure{{margin:0 0 2.5em}} figcaption{{font-size:1.2em;margin-top:.4em}}</style>
<h1>Which side, A or B, is closer to the ground truth (the middle)?</h1>
<p>Choose for every pair, then save the answers and put answers.csv in the test's folder.</p>
{rows}
<button onclick="save()">Save answers.csv</button>
<script>
function save() {{
  const names = {names!r};
  const lines = ["pair,choice"].concat(names.map(n => {{
    const c = document.querySelector(`input[name="${{n}}"]:checked`);
    return n + "," + (c ? c.value : "");
  }}));
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([lines.join("\\n") + "\\n"], {{type: "text/csv"}}));
  link.download = "answers.csv";
  link.click();
}}
</script>
"""


def score_blind_test(folder: str | Path) -> BlindScore:
    """Count the judge's answers (``answers.csv``: A or B per pair, case ignored, blank for
    unanswered) against ``key.csv``, as :func:`write_blind_test` wrote them."""
    folder = Path(folder)
    key = {row["pair"]: row for row in _read_rows(folder / "key.csv", KEY_FIELDS)}
    answers = _read_rows(folder / "answers.csv", ["pair", "choice"])
    wins = dict.fromkeys(sorted({row[side] for row in key.values() for side in "AB"}), 0)
    seen = set()
    for line, row in enumerate(answers, 2):
        choice = (row["choice"] or "").strip().upper()
        if row["pair"] not in key:
            raise ValueError(f"{folder / 'answers.csv'}, line {line}: {row['pair']!r} is not a pair of this test")
        if choice not in ("A", "B", ""):
            raise ValueError(f"{folder / 'answers.csv'}, line {line}: the choice must be A or B, not {row['choice']!r}")
        if choice and row["pair"] in seen:
            raise ValueError(f"{folder / 'answers.csv'}, line {line}: {row['pair']} is answered twice")
        if choice:
            wins[key[row["pair"]][choice]] += 1
            seen.add(row["pair"])
    return BlindScore(wins=wins, unanswered=len(key) - len(seen))


def _write_rows(path: Path, fields: list[str], rows: list[dict]) -> None:
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _read_rows(path: Path, fields: list[str]) -> list[dict]:
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
    except FileNotFoundError:
        raise ValueError(f"{path}: not found (is {path.parent} a folder written by srtool eval --blind?)") from None
    missing = [name for name in fields if name not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(missing)}")
    return rows
