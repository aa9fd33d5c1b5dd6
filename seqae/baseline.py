"""The nearest-training-window baseline for long series (the matrix profile's idea).

Each window of the data is scored by its distance to the nearest window of normal training data: the
mean squared difference over its steps and features, in the model's standardised units. Spread to
steps as seqae's own step score is (``seqae.infer.steps``), it is the simple baseline that a
long-series anomaly score has to beat: ``seqae evaluate --baseline-data`` reports it beside the
model's score.

The bank holds every full window of the training data at stride 1 (``DataConfig`` of the model with
``stride=1``), thinned to every second, fourth, ... window in reading order when it would exceed
``max_windows`` (by default as many as fit in ``MAX_BANK_BYTES`` with their per-step norms); what
was kept is recorded (``NearestWindows.stride``). A shorter trailing window
(``partial_windows="keep"``) is compared with the first steps of the bank's windows, through the
bank's cumulative per-step squared norms, so that windows of every length share one matrix product.

Memory: the bank and its per-step norms (at most ``MAX_BANK_BYTES``), plus while building one read
batch of stride-1 windows (``READ_VALUES`` float32 values, a few times that inside the reader), plus
while scoring one chunk of at most ``CHUNK_VALUES`` float64 distances. Distances are computed in float64, with numpy.

No TensorFlow, no Prefect.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from seqae import names
from seqae.data import DataConfig, RowFilter, SequenceBatch, ShardReader, resolve_shards
from seqae.errors import SeqaeError

#: The bank's size at most, in bytes, with its per-step norms (float64: 119,000 windows of 140
#: steps and one feature).
MAX_BANK_BYTES = 256 * 2 ** 20
#: Distances computed at once, at most (float64: 128 MiB).
CHUNK_VALUES = 2 ** 24
#: Values of one read batch of stride-1 windows while building, at most (float32: 16 MiB; the reader
#: holds about three times as much while decoding).
READ_VALUES = 2 ** 22
#: Windows scored against the whole bank at once, at most.
CHUNK = 256
#: Windows of the data scored against the bank for the step threshold at most (``reference_distances``),
#: in blocks of consecutive ones: 20,000 windows against a full bank of 119,000 take about 20 s on 2 cores.
REFERENCE_WINDOWS = 20_000
REFERENCE_BLOCK = 500
#: The input of ``neighbours.onnx`` (``NearestWindows.to_onnx``): windows as the bank holds them.
INPUT_WINDOWS = "windows"
#: The opset of ``neighbours.onnx`` (the reductions take ``axes`` as an attribute up to 17).
NEIGHBOURS_OPSET = 17


def prepare_windows(values: np.ndarray, lengths: np.ndarray, window: int, mean: np.ndarray, std: np.ndarray,
                    dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Windows as the bank holds them: ``(windows, window * features)`` standardised with ``mean`` and
    ``std``, zero past each window's valid steps, and those steps (``(windows,)`` int64, 1 ..
    ``window``); ``values (windows, time, features)`` raw, post-padded (``time`` may differ from
    ``window``: a batch of short trailing windows is as wide as its longest)."""
    lengths = np.clip(np.asarray(lengths), 1, window).astype(np.int64)
    n, f = len(lengths), values.shape[2]
    steps = min(values.shape[1], window)
    w = np.zeros((n, window * f), dtype=dtype)
    w[:, :steps * f] = ((values[:, :steps].astype(np.float64) - mean) / std).reshape(n, -1)
    w[np.arange(window * f)[None, :] >= (lengths * f)[:, None]] = 0.0  # padding: nothing in w . bank
    return w, lengths


def _ordinal(column) -> np.ndarray:
    """Times as int64 (datetimes as nanoseconds): what overlaps are decided on."""
    values = column.to_numpy(zero_copy_only=False)
    if np.issubdtype(values.dtype, np.datetime64):
        return values.astype("datetime64[ns]").view(np.int64)
    return np.asarray(values).astype(np.int64)


def _identify(batch: SequenceBatch, rows: np.ndarray, shard: int, codes: dict) -> tuple[np.ndarray, ...]:
    """The run (``codes[(shard, key)]``, numbered in reading order as first seen), first and last
    step's time of the windows ``rows`` of a long-layout batch."""
    keys = batch.keys.column(0).take(rows).to_numpy(zero_copy_only=False)
    unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    number = np.empty(len(unique), dtype=np.int64)
    for i in np.argsort(first):  # in reading order, so that the bank's runs ascend
        number[i] = codes.setdefault((shard, unique[i]), len(codes))
    runs = number[inverse]
    return (runs, _ordinal(batch.keys.column(names.WINDOW_START).take(rows)),
            _ordinal(batch.keys.column(names.WINDOW_END).take(rows)))


class NearestWindows:
    """A bank of standardised training windows and the distance of new windows to their nearest one.

    Build it with ``NearestWindows.build``; ``distances(values, lengths)`` scores a batch of windows.
    """

    def __init__(self, bank: np.ndarray, window: int, features: int, mean: np.ndarray, std: np.ndarray,
                 stride: int, windows_read: int, data: str, windows_rejected: int = 0,
                 runs: np.ndarray | None = None, starts: np.ndarray | None = None, ends: np.ndarray | None = None,
                 run_codes: dict | None = None):
        self.bank = bank  # (windows, window * features) float64, standardised
        # Each bank window's run (a series within one shard, ``run_codes[(shard index, key)]``, in
        # reading order) and its first and last step's time: two windows of one run overlap when their
        # times do. None (a bank made by hand): each window is a run of its own.
        self.runs = np.arange(len(bank), dtype=np.int64) if runs is None else runs
        self.starts = np.zeros(len(bank), dtype=np.int64) if starts is None else starts
        self.ends = np.zeros(len(bank), dtype=np.int64) if ends is None else ends
        self.run_codes = {} if run_codes is None else run_codes
        self.window, self.features = window, features
        # (window, windows): row t - 1 is each bank window's squared norm over its first t steps
        steps = bank.reshape(len(bank), window, features)
        self.norms = np.einsum("wtf,wtf->tw", steps, steps)
        np.cumsum(self.norms, axis=0, out=self.norms)
        self.mean, self.std = mean, std
        self.stride, self.windows_read, self.windows_rejected, self.data = stride, windows_read, windows_rejected, data

    @staticmethod
    def capacity(window: int, features: int) -> int:
        """The bank's windows at most by default: as many as fit in ``MAX_BANK_BYTES``, norms included."""
        return max(MAX_BANK_BYTES // (8 * window * (features + 1)), 1)

    @classmethod
    def build(cls, data: str, config: DataConfig, num_features: int, normalization: dict[str, Any], *,
              max_windows: int | None = None, read_batch_size: int = 16384,
              row_filter: RowFilter | None = None) -> NearestWindows:
        """Read every full window of the long-layout shards at ``data`` (normal data: the bank is what
        "normal" means) at stride 1, standardised with the model's ``normalization`` (``mean``,
        ``std``), thinned to at most ``max_windows`` (None: ``capacity``).

        Args:
            row_filter: the rows of ``data`` to read (the training's ``row_filter``).
        """
        if config.layout != "long" or not config.window:
            raise SeqaeError(f"baseline: the nearest-window baseline needs a long-layout model with a window; "
                             f"this one reads the {config.layout} layout")
        width = config.window
        if max_windows is None:
            max_windows = cls.capacity(width, num_features)
        if max_windows < 1:
            raise SeqaeError(f"baseline: max_windows must be at least 1, got {max_windows}")
        every = dataclasses.replace(config, stride=1, partial_windows="drop")
        # about one stride-1 window per step read: a batch of steps holds at most READ_VALUES values
        read_batch_size = int(np.clip(READ_VALUES // (width * num_features), 1, read_batch_size))
        mean = np.asarray(normalization["mean"], dtype=np.float64)
        std = np.asarray(normalization["std"], dtype=np.float64)
        # one array, filled in place and grown (resized, not copied beside itself) up to max_windows
        bank = np.empty((min(max_windows, 1024), width * num_features))
        positions = np.empty(len(bank), dtype=np.int64)  # each kept window's index among those read
        runs = np.empty(len(bank), dtype=np.int64)  # its run: one series within one shard
        starts = np.empty(len(bank), dtype=np.int64)  # its first and last step's time (ordinal: int64)
        ends = np.empty(len(bank), dtype=np.int64)
        codes: dict = {}
        step, held, read = 1, 0, 0
        windows_rejected = rows_rejected = rows = 0
        reasons: dict[str, int] = {}
        for number, shard in enumerate(resolve_shards(data)):
            reader = ShardReader(shard, every, batch_size=read_batch_size, num_features=num_features,
                                 row_filter=row_filter)
            for batch, _rejects in reader:
                full = np.flatnonzero(batch.lengths == width)
                if not len(full):
                    continue
                run_of, start_of, end_of = _identify(batch, full, number, codes)
                index = read + np.arange(len(full))
                read += len(full)
                while held + int((index % step == 0).sum()) > max_windows:
                    step *= 2  # thin: every second window of those kept, from now on too
                    chosen_rows = np.flatnonzero(positions[:held] % step == 0)
                    for at in range(0, len(chosen_rows), CHUNK):  # in place: row at reads rows >= at
                        rows_at = chosen_rows[at:at + CHUNK]
                        bank[at:at + len(rows_at)] = bank[rows_at]
                        for kept in (positions, runs, starts, ends):
                            kept[at:at + len(rows_at)] = kept[rows_at]
                    held = len(chosen_rows)
                chosen = index % step == 0
                keep = full[chosen]
                if not len(keep):
                    continue
                if held + len(keep) > len(bank):
                    grown = min(max(held + len(keep), 2 * len(bank)), max_windows)
                    bank.resize((grown, width * num_features), refcheck=False)
                    for kept in (positions, runs, starts, ends):
                        kept.resize(grown, refcheck=False)
                # standardised straight into the bank, only the kept windows
                into = bank[held:held + len(keep)].reshape(len(keep), width, num_features)
                np.subtract(batch.values[keep, :width], mean, out=into)
                into /= std
                positions[held:held + len(keep)] = index[chosen]
                runs[held:held + len(keep)] = run_of[chosen]
                starts[held:held + len(keep)] = start_of[chosen]
                ends[held:held + len(keep)] = end_of[chosen]
                held += len(keep)
            windows_rejected += reader.stats.windows_rejected
            rows_rejected += reader.stats.rows_rejected
            rows += reader.stats.rows_in
            for reason, n in reader.stats.reasons.items():
                reasons[reason] = reasons.get(reason, 0) + n
        if not held:
            found = "; ".join(f"{reason}: {n}" for reason, n in sorted(reasons.items()))
            if windows_rejected or rows_rejected:
                raise SeqaeError(f"{data}: no full window of {width} steps to compare with: of {rows} rows read, "
                                 f"{rows_rejected} row(s) and {windows_rejected} window(s) were rejected (reasons: "
                                 f"{found}); the baseline needs normal series with at least one clean window")
            raise SeqaeError(f"{data}: no full window of {width} steps to compare with ({rows} rows read): the "
                             "baseline needs normal series at least one window long")
        bank.resize((held, width * num_features), refcheck=False)  # gives back what thinning freed
        return cls(bank, width, num_features, mean, std, step, read, data, windows_rejected,
                   runs[:held].copy(), starts[:held].copy(), ends[:held].copy(), codes)

    def prepare(self, values: np.ndarray, lengths: np.ndarray, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
        """``prepare_windows`` with this bank's window and normalisation."""
        return prepare_windows(values, lengths, self.window, self.mean, self.std, dtype)

    def distances(self, values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """``(windows,)``: each window's mean squared difference to its nearest bank window, over its
        valid steps and features (``values (windows, time, features)`` raw, post-padded). In float64;
        ``neighbours.onnx`` (``to_onnx``) computes the same in float32."""
        out = np.empty(len(lengths), dtype=np.float64)
        chunk = self._chunk()
        for a in range(0, len(lengths), chunk):
            out[a:a + chunk] = self._nearest(*self.prepare(values[a:a + chunk], lengths[a:a + chunk]))
        return out

    def _chunk(self) -> int:
        return int(np.clip(CHUNK_VALUES // len(self.bank), 1, CHUNK))

    def _nearest(self, w: np.ndarray, used: np.ndarray, exclude: list[tuple[int, int]] | None = None) -> np.ndarray:
        """The distances of prepared windows (``prepare``), each row ``i`` without the bank rows
        ``exclude[i]`` (``[lo, hi)``)."""
        # sum over each window's own steps of (w - b)^2 = |b|^2 over those steps - 2 w . b + |w|^2
        cross = w @ self.bank.T
        cross *= -2.0
        if (used == used[0]).all():  # in place: one chunk of distances in memory
            cross += self.norms[used[0] - 1]
        else:
            for i, length in enumerate(used):
                cross[i] += self.norms[length - 1]
        for i, (lo, hi) in enumerate(exclude or ()):
            cross[i, lo:hi] = np.inf
        nearest = cross.min(axis=1) + np.einsum("ij,ij->i", w, w)
        del cross
        return np.maximum(nearest, 0.0) / (used * self.features)

    def reference_distances(self, data: str, config: DataConfig, *, row_filter: RowFilter | None = None,
                            max_windows: int = REFERENCE_WINDOWS,
                            read_batch_size: int = 16384) -> tuple[np.ndarray, dict[str, Any]]:
        """What a step threshold on ``nearest_distance`` is fitted on: the full windows of ``data`` (the
        bank's data) at the model's stride (``config``), each scored against the bank without the
        windows of its own series that share a step with it (the matrix profile's self-join with an
        exclusion zone of one window), as a new normal window would be scored. Read apart from the
        bank, so that a thinned bank's grid does not line up with them.

        Returns:
            The distances in reading order (one series after another, each in time order), with a NaN
            wherever the next window is not the next one read (a new series or shard, a gap between
            blocks), so that runs of covering windows never span one (a window rejected inside a
            series, e.g. for a NaN, is not marked);
            and what was scored: ``windows``, ``blocks`` (at most ``max_windows`` windows in blocks of
            ``REFERENCE_BLOCK`` consecutive ones, spread evenly over the data, where there are more).
        """
        stride = config.effective_stride
        every = dataclasses.replace(config, stride=stride, partial_windows="drop")
        estimate = max(self.windows_read * self.stride // stride, 1)  # the bank read every full window
        spread = int(np.ceil(estimate / max(max_windows, 1)))  # keep one block of REFERENCE_BLOCK in so many
        out: list[np.ndarray] = []
        seen = kept = 0
        previous = None  # (run, index) of the last window kept
        chunk = self._chunk()
        codes = dict(self.run_codes)
        for number, shard in enumerate(resolve_shards(data)):
            reader = ShardReader(shard, every, batch_size=read_batch_size, num_features=self.features,
                                 row_filter=row_filter)
            for batch, _rejects in reader:
                full = np.flatnonzero(batch.lengths == self.window)
                index = seen + np.arange(len(full))
                seen += len(full)
                take = (index // REFERENCE_BLOCK) % spread == 0
                if not take.any():
                    continue
                full, index = full[take], index[take]
                runs, starts, ends = _identify(batch, full, number, codes)
                for a in range(0, len(full), chunk):
                    rows = slice(a, a + chunk)
                    exclude = [self._overlapping(r, s, e) for r, s, e in zip(runs[rows], starts[rows], ends[rows])]
                    w, used = self.prepare(batch.values[full[rows]], batch.lengths[full[rows]])
                    near = self._nearest(w, used, exclude)
                    breaks = []  # before each window that is not the next one of the same series
                    for i in range(a, a + len(near)):
                        if previous is not None and (previous[0] != runs[i] or previous[1] + 1 != index[i]):
                            breaks.append(i - a)
                        previous = (runs[i], index[i])
                    out.append(np.insert(near, breaks, np.nan))
                    kept += len(near)
        distances = np.concatenate(out) if out else np.zeros(0)
        return distances, {"windows": kept, "windows_read": seen, "stride": stride,
                           "blocks": f"{REFERENCE_BLOCK} windows in {spread}" if spread > 1 else "all"}

    def _overlapping(self, run: int, start, end) -> tuple[int, int]:
        """``[lo, hi)``: the bank rows of ``run`` whose steps overlap ``[start, end]`` (the bank is in
        reading order: runs ascending, and within a run starts and ends ascending)."""
        lo_run, hi_run = np.searchsorted(self.runs, run, "left"), np.searchsorted(self.runs, run, "right")
        if lo_run == hi_run:
            return 0, 0
        lo = int(lo_run) + int(np.searchsorted(self.ends[lo_run:hi_run], start, "left"))
        hi = int(lo_run) + int(np.searchsorted(self.starts[lo_run:hi_run], end, "right"))
        return lo, max(hi, lo)

    def to_onnx(self, props: dict[str, str] | None = None):
        """The bank as an ONNX graph (``neighbours.onnx``), so that onnxruntime computes the distances
        on the scorer's device: input ``windows`` ``(batch, window * features)`` float32 as ``prepare``
        makes them and ``lengths`` ``(batch,)`` int64; output ``nearest_distance`` ``(batch,)``
        float32, ``distances`` in float32. One Gemm against the bank, the norms of each window's own
        steps gathered, a ReduceMin (opset 17: reductions with an ``axes`` attribute).

        ``props``: metadata properties of the file."""
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        d = self.window * self.features
        bank = numpy_helper.from_array(self.bank.astype(np.float32), "bank")
        norms = numpy_helper.from_array(self.norms.astype(np.float32), "norms")
        consts = [numpy_helper.from_array(np.array(v, dtype=t), name) for name, v, t in
                  (("one", 1, np.int64), ("features", self.features, np.int64), ("zero", 0.0, np.float32))]
        nodes = [
            helper.make_node("Gemm", [INPUT_WINDOWS, "bank"], ["cross"], alpha=-2.0, transB=1),  # -2 w . b
            helper.make_node("Sub", [names.INPUT_LENGTHS, "one"], ["row"]),
            helper.make_node("Gather", ["norms", "row"], ["own_norms"], axis=0),  # |b|^2 over the window's steps
            helper.make_node("Add", ["cross", "own_norms"], ["partial"]),
            helper.make_node("ReduceMin", ["partial"], ["least"], axes=[1], keepdims=0),
            helper.make_node("ReduceSumSquare", [INPUT_WINDOWS], ["own"], axes=[1], keepdims=0),  # |w|^2
            helper.make_node("Add", ["least", "own"], ["sum"]),
            helper.make_node("Max", ["sum", "zero"], ["clipped"]),
            helper.make_node("Mul", [names.INPUT_LENGTHS, "features"], ["count_int"]),
            helper.make_node("Cast", ["count_int"], ["count"], to=TensorProto.FLOAT),
            helper.make_node("Div", ["clipped", "count"], [names.NEAREST_DISTANCE]),
        ]
        graph = helper.make_graph(
            nodes, "seqae_neighbours",
            [helper.make_tensor_value_info(INPUT_WINDOWS, TensorProto.FLOAT, ["batch", d]),
             helper.make_tensor_value_info(names.INPUT_LENGTHS, TensorProto.INT64, ["batch"])],
            [helper.make_tensor_value_info(names.NEAREST_DISTANCE, TensorProto.FLOAT, ["batch"])],
            [bank, norms, *consts])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", NEIGHBOURS_OPSET)],
                                  producer_name="seqae")
        model.ir_version = min(model.ir_version, 9)  # what onnxruntime 1.31 reads
        onnx.helper.set_model_props(model, {**(props or {}), "seqae.graph": "neighbours", "seqae.window": str(self.window),
                                            "seqae.bank_windows": str(len(self.bank))})
        onnx.checker.check_model(model)
        return model

    def describe(self) -> dict[str, Any]:
        return {"what": "each window's mean squared distance (standardised units) to its nearest window of the "
                        "baseline data, spread to steps as the model's step score",
                "data": self.data, "bank_windows": int(len(self.bank)), "windows_read": int(self.windows_read),
                "windows_rejected": int(self.windows_rejected), "bank_stride": int(self.stride)}
