"""Convert classification sets from the archive's ``.ts`` files to the sequence layout the quality suite
reads (the layout of ``../shared/data/ucr-suite/``): ``id`` int64 (TEST ids from 100000), ``label``
string, ``values`` ``list<list<float32>>`` as ``[time][feature]``, values unchanged.

    python benchmarks/data/convert_ts.py SOURCE_DIR OUT_DIR NAME [NAME ...]

``SOURCE_DIR`` holds ``<NAME>/<NAME>_TRAIN.ts`` and ``_TEST.ts`` (the aeon wheel's
``aeon/datasets/data/``, unzipped). Prints each set's rows, lengths, classes, the SHA-256 of its source
files and 1-NN Euclidean accuracy on TEST: on the values zero-padded to the longest row (what ``make
quality`` computes for variable-length sets), and, where the archive ships an equal-length version
(``<NAME>_eq_*.ts``), on that.
"""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

TEST_IDS = 100_000


def read_ts(path: Path) -> tuple[list[np.ndarray], list[str]]:
    """Rows ``(time, features)`` float32 and their labels from a ``.ts`` file: after ``@data``, one row
    per line, dimensions separated by ``:``, the label last. Missing values (``?``) are refused."""
    rows, labels, data = [], [], False
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not data:
            data = line.lower() == "@data"
            continue
        *dims, label = line.split(":")
        if any("?" in d for d in dims):
            raise ValueError(f"{path}: row {len(rows)}: missing values ('?') are not converted")
        series = [np.asarray(d.split(","), dtype=np.float32) for d in dims]
        if len({len(s) for s in series}) != 1:
            raise ValueError(f"{path}: row {len(rows)}: dimensions of different lengths {[len(s) for s in series]}")
        rows.append(np.stack(series, axis=1))
        labels.append(label.strip())
    return rows, labels


def table(rows: list[np.ndarray], labels: list[str], first_id: int) -> pa.Table:
    features = rows[0].shape[1]
    flat = pa.array(np.concatenate([r.reshape(-1) for r in rows]), pa.float32())
    inner = pa.FixedSizeListArray.from_arrays(flat, features).cast(pa.list_(pa.float32()))
    offsets = pa.array(np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int32))
    return pa.table({"id": pa.array(np.arange(first_id, first_id + len(rows)), pa.int64()),
                     "label": pa.array(labels, pa.string()),
                     "values": pa.ListArray.from_arrays(offsets, inner)})


def one_nn(train: list[np.ndarray], train_y: list[str], test: list[np.ndarray], test_y: list[str]) -> float:
    """1-NN Euclidean accuracy on ``test``, every row zero-padded to the longest of both (as
    ``seqae.evaluate.probe`` pads the raw values: ``seqae.data.batch.pad_concat``)."""
    from sklearn.neighbors import KNeighborsClassifier

    from seqae.data.batch import pad_concat

    values, _ = pad_concat([(r[None], np.array([len(r)])) for r in train + test], train[0].shape[1])
    flat = values.reshape(len(values), -1)
    fitted = KNeighborsClassifier(n_neighbors=1).fit(flat[:len(train)], train_y)
    return float(fitted.score(flat[len(train):], test_y))


def main() -> None:
    source, out, names = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        parts = {part: read_ts(source / name / f"{name}_{part}.ts") for part in ("TRAIN", "TEST")}
        for part, first_id in (("TRAIN", 0), ("TEST", TEST_IDS)):
            pq.write_table(table(*parts[part], first_id), out / f"{name}_{part}.parquet")
        lengths = [len(r) for rows, _ in parts.values() for r in rows]
        summary = {"set": name, "train_rows": len(parts["TRAIN"][0]), "test_rows": len(parts["TEST"][0]),
                   "length": [min(lengths), max(lengths)], "features": parts["TRAIN"][0][0].shape[1],
                   "classes": len(set(parts["TRAIN"][1])),
                   "one_nn_zero_padded": round(one_nn(*parts["TRAIN"], *parts["TEST"]), 4),
                   "sha256": {f"{name}_{p}.ts": hashlib.sha256((source / name / f"{name}_{p}.ts").read_bytes())
                              .hexdigest() for p in parts}}
        equal = {p: source / name / f"{name}_eq_{p}.ts" for p in ("TRAIN", "TEST")}
        if all(path.exists() for path in equal.values()):
            summary["one_nn_equal_length_version"] = round(one_nn(*read_ts(equal["TRAIN"]), *read_ts(equal["TEST"])), 4)
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
