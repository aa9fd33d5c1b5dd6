"""Names shared by the Keras model, the ONNX graphs, the model directory and the embed job's output
folder: defined once, here. Nothing else in seqae spells a file or folder name as a literal."""

# ONNX inputs and outputs (Keras input names and output keys too).
INPUT_VALUES = "values"
INPUT_LENGTHS = "lengths"

EMBEDDING = "embedding"
RECON_ERROR = "recon_error"
STEP_ERROR = "step_error"
PRED_ERROR = "pred_error"
NEAREST_DISTANCE = "nearest_distance"  # long layout: a window's distance to its nearest training window

# The model directory.
MODEL_FILE = "model.keras"
METADATA_FILE = "seqae.json"
LOSS_PLOT_FILE = "loss.png"
ENCODER_ONNX = "encoder.onnx"
SCORER_ONNX = "scorer.onnx"
SCORER_FP16_ONNX = "scorer.fp16.onnx"
SCORER_INT8_ONNX = "scorer.int8.onnx"
NEIGHBOURS_ONNX = "neighbours.onnx"  # long layout: the bank of training windows (seqae.baseline)
THRESHOLD_FILE = "threshold.json"
REFERENCE_FILE = "reference.parquet"  # errors and embeddings of held-out rows: the drift reference
NEIGHBOURS_REFERENCE_FILE = "neighbours.parquet"  # training windows against the bank: the step threshold's data

# An output folder of `seqae embed` (seqae.infer.commit.OutputFolder is the one owner of this layout). Each
# folder below OUT holds Parquet files of one schema and nothing else, so that every engine reads it
# as a folder; seqae's own records sit beside them, under CONTROL_DIR, never inside.
EMBEDDINGS_DIR = "embeddings"  # OUT/embeddings/<output>.parquet: the data (one file per input shard)
STEPS_DIR = "steps"  # OUT/steps/<output>.parquet: per-timestamp scores (`seqae embed --step-scores`)
REJECTS_DIR = "rejects"  # OUT/rejects/<stem>.rejects.parquet: rejected rows with their reasons
CONTROL_DIR = "_seqae"  # OUT/_seqae/: commit records, quarantine, runs, folder state, lock, lease
ENTRIES_DIR = "manifest"  # _seqae/manifest/<output>.json: one commit record per shard
QUARANTINE_DIR = "quarantine"  # _seqae/quarantine/<output>.json: input files that could not be used
RUNS_DIR = "runs"  # _seqae/runs/<time>.json: one report per run
STAGING_DIR = "staging"  # _seqae/staging/: files being written, renamed into place when whole
STATE_FILE = "state.json"  # _seqae/state.json: the folder's state (every committed shard, totals)
LOCK_FILE = "lock"  # _seqae/lock: the folder's flock (local filesystems)
LEASE_FILE = "lease"  # _seqae/lease: the lock of object stores (seqae.lease)
MANIFEST_SUFFIX = ".json"
OUTPUT_SUFFIX = ".parquet"
REJECTS_SUFFIX = ".rejects.parquet"
TMP_SUFFIX = ".tmp"
LOCK_SUFFIX = ".lock"  # _seqae/manifest/.<output>.lock: one writer per output at a time

# `seqae validate --rejects-dir D`: D/_rejects/<stem>.rejects.parquet (names starting with "_" or "."
# are never read back as input data: Hive/Spark convention).
VALIDATE_REJECTS_DIR = "_rejects"

# The layout before 2026-12 (seqae.infer.migrate moves it): data files at OUT/*.parquet beside these.
LEGACY_MANIFEST_DIR = "_manifest"
LEGACY_REJECTS_DIR = "_rejects"
LEGACY_QUARANTINE_DIR = "_files"  # under LEGACY_REJECTS_DIR
LEGACY_STEPS_DIR = "_steps"
LEGACY_SUMMARY_FILE = "_manifest.json"
LEGACY_LOCK_FILE = ".seqae.lock"
LEGACY_LEASE_FILE = ".seqae.lease"

# Key of seqae's JSON in Parquet footers and the output columns the job adds.
PARQUET_METADATA_KEY = "seqae"
LENGTH = "length"
SCORE = "score"
IS_ANOMALY = "is_anomaly"
MODEL_ID = "model_id"  # lineage: which model wrote the row (string, dictionary-encoded in Parquet)
MODEL_VERSION = "model_version"  # lineage: its version (int32)
WINDOW_START = "window_start"
WINDOW_END = "window_end"

# Per-timestamp scores (long layout): one row per series and time step.
STEP_ERROR_MEAN = "step_error_mean"
STEP_ERROR_MAX = "step_error_max"
WINDOWS = "windows"
WINDOW_ERROR_MEAN = "window_error_mean"  # the mean error of the windows covering the step
WINDOW_ERROR_MIN = "window_error_min"  # the least error of the windows covering the step
WINDOW_DISTANCE_MIN = "window_distance_min"  # the least nearest_distance of those windows (with neighbours.onnx)

#: The registry name the flows, their deployments and `python -m flows` use when none is given.
DEFAULT_MODEL_NAME = "default"
