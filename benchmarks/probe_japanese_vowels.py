"""The linear probe on a multivariate, variable-length data set: JapaneseVowels (UEA archive).

    python benchmarks/probe_japanese_vowels.py PATH_TO/data/uea [--epochs 300] [--units 64]

Trains the default autoencoder, unsupervised, on the archive's TRAIN part only (270 utterances, 12
features, 7-26 frames), then fits a logistic regression on the embeddings of TRAIN and reports its
accuracy on TEST (370 utterances, speaker labels 1-9), beside the same probe on the raw zero-padded
values and a 1-nearest-neighbour classifier on them. Writes bench/results/probe-japanese-vowels-<date>.json.
"""

import argparse
import json
import shutil
import tempfile
from datetime import date
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("uea", help="folder holding JapaneseVowels_TRAIN.parquet and JapaneseVowels_TEST.parquet")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--units", type=int, default=64)
    args = parser.parse_args()

    from seqae.config import ModelConfig, TrainConfig
    from seqae.evaluate import probe, raw_values, score_labelled
    from seqae.export import export
    from seqae.train import train

    work = Path(tempfile.mkdtemp(prefix="seqae-jv-"))
    (work / "data").mkdir()
    for part in ("TRAIN", "TEST"):
        shutil.copy(Path(args.uea) / f"JapaneseVowels_{part}.parquet", work / "data" / f"{part.lower()}.parquet")
    trained = train(str(work / "data"), work / "model", model_config=ModelConfig(units=args.units),
                    train_config=TrainConfig(row_filter="id < 100000", max_epochs=args.epochs))
    export(work / "model")
    scored = score_labelled(work / "model", str(work / "data"), "label", device="cpu")
    result = {"data": "JapaneseVowels (UEA)", "model": trained.metadata["model"],
              "epochs": trained.metadata["training"]["epochs"],
              "probe": probe(scored, scored.keys < 100000, raw_values(work / "model", str(work / "data")))}
    out = Path("bench/results") / f"probe-japanese-vowels-{date.today()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["probe"]))


if __name__ == "__main__":
    main()
