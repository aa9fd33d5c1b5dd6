"""The linear probe, with 1-NN on the embeddings beside it, for models a ``make quality`` run trained.

    python benchmarks/probe_neighbours.py WORK SET [SET ...] [--seed 0] [--out FILE]

``WORK`` is the run's work folder (``quality.py`` prints it; it holds ``models/probe-<set>-<seed>`` and
``sets/<set>``, and is deleted when the run ends: copy it first). ``seqae.evaluate.probe`` records
1-NN on the embeddings since 2026-12-03; this scores models trained before that without retraining
them. Prints one JSON object per set and, with ``--out``, writes them all.
"""

import argparse
import json
from pathlib import Path

from quality import TEST_IDS

from seqae.evaluate import probe, raw_values, score_labelled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("sets", nargs="+")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = {}
    for name in args.sets:
        model, folder = args.work / "models" / f"probe-{name}-{args.seed}", args.work / "sets" / name
        scored = score_labelled(model, str(folder), "label", device="cpu")
        results[name] = probe(scored, scored.keys < TEST_IDS, raw_values(model, str(folder)))
        print(json.dumps({"set": name, "seed": args.seed, **results[name]}), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"seed": args.seed, "probe": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
