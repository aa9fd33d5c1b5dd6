"""What the nearest-training-window peer rests on, on ``make quality``'s long ECG set (issue #22, item 3).

    python benchmarks/long_peer.py [--work DIR] [--out bench/results]

The long ECG set is ECG5000 beats end to end, every beat exactly 140 steps, scored in windows of 140
at a stride of 10: every test window starts at one of the 14 phases of the beat that the training
windows also start at. The peer (``quality.nearest_window_peer``: each test window's distance to its
nearest training window, the least over the windows covering a step) is run here with other banks of
training windows:

- every training window (stride 1): the peer as ``make quality`` runs it;
- the training windows seqae trains on (stride 10, from the series' start): the same phases as the
  test windows;
- the same stride 10 started 5 steps later: no training window at a test window's phase;
- every 140th window (one per beat, aligned with the beats) and the same started half a beat later;
- every training window, with each test series started 5 steps later (its windows between phases);

and on the variable-rhythm set (``LONG_RHYTHM``: each beat resampled to 126-154 steps, where no
phase repeats). No model is trained. Step ROC-AUC of each (scikit-learn) into
``<out>/long-peer-<date>.json`` and printed.
"""

import argparse
import json
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality as q  # noqa: E402

W, S = q.LONG_WINDOW, q.LONG_STRIDE

BANKS = [  # (what, bank stride, bank offset, test offset)
    ("every training window (stride 1): make quality's peer", 1, 0, 0),
    ("stride 10: the stride and phases seqae trains on, the test windows' phases", 10, 0, 0),
    ("stride 10 started 5 steps later: no window at a test window's phase", 10, 5, 0),
    ("one window per beat, aligned with the beats (stride 140)", 140, 0, 0),
    ("one window per beat, half a beat off (stride 140 from step 70)", 140, 70, 0),
    ("every training window; each test series started 5 steps later", 1, 0, 5),
]


def read(folder: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per series, in time order: values (float64) and the anomaly flags."""
    t = pq.read_table(folder).sort_by([("series", "ascending"), ("time", "ascending")])
    keys = t.column("series").to_numpy()
    values, flags = t.column("value").to_numpy().astype(np.float64), t.column("is_anomaly").to_numpy()
    return [(values[keys == k], flags[keys == k]) for k in np.unique(keys)]


def peer_auc(train, test, bank_stride: int, bank_offset: int, test_offset: int) -> tuple[float, int]:
    """Step ROC-AUC of the least covering-window distance to the bank's nearest window, and the bank's size."""
    bank = np.concatenate([sliding_window_view(x, W)[bank_offset::bank_stride] for x, _ in train])
    bank_sq = (bank ** 2).sum(axis=1)
    ys, scores = [], []
    for x, y in test:
        x, y = x[test_offset:], y[test_offset:]
        starts = q.window_starts(len(x), W, S)
        windows = sliding_window_view(x, W)[starts]
        nearest = np.concatenate([((w ** 2).sum(axis=1)[:, None] + bank_sq[None] - 2 * w @ bank.T).min(axis=1)
                                  for w in np.array_split(windows, max(len(windows) // 256, 1))]) / W
        least = np.full(len(x), np.inf)
        for i, s in enumerate(starts):
            least[s:s + W] = np.minimum(least[s:s + W], nearest[i])
        covered = np.isfinite(least)
        ys.append(y[covered].astype(bool))
        scores.append(least[covered])
    return round(float(roc_auc_score(np.concatenate(ys), np.concatenate(scores))), 4), len(bank)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", help="a folder for the two sets (default: a temporary one)")
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="seqae-long-peer-"))
    result: dict = {"date": date.today().isoformat(), "window": W, "stride": S, "sets": {}}
    for name, rhythm in (("long-ecg", 0.0), ("long-ecg-rhythm", q.LONG_RHYTHM)):
        folder = work / name
        if not (folder / "built.json").exists():
            built = q.long_ecg_set(folder, q.LongEcgShape(rhythm=rhythm))
            (folder / "built.json").write_text(json.dumps(built))
        train, test = read(folder / "train"), read(folder / "test")
        banks = BANKS if not rhythm else BANKS[:1]
        rows = []
        for what, bank_stride, bank_offset, test_offset in banks:
            auc, size = peer_auc(train, test, bank_stride, bank_offset, test_offset)
            rows.append({"bank": what, "bank_windows": size, "step_roc_auc": auc})
            print(f"{name:16s} {what:70s} {size:6d} windows  step ROC-AUC {auc}")
        result["sets"][name] = {"data": json.loads((folder / "built.json").read_text()), "banks": rows}
    out = Path(args.out) / f"long-peer-{result['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
