"""Names shared by the Keras model, the ONNX graphs, the model directory and the embed job's output
folder: defined once, here. Nothing else in seqae spells a file or folder name as a literal."""

# ONNX inputs and outputs (Keras input names and output keys too).
INPUT_VALUES = "values"
INPUT_LENGTHS = "lengths"

EMBEDDING = "embedding"
RECON_ERROR = "recon_error"
STEP_ERROR = "step_error"
PRED_ERROR = "pred_error"

# The model directory.
MODEL_FILE = "model.keras"
METADATA_FILE = "seqae.json"
LOSS_PLOT_FILE = "loss.png"
ENCODER_ONNX = "encoder.onnx"
SCORER_ONNX = "scorer.onnx"
SCORER_FP16_ONNX = "scorer.fp16.onnx"
SCORER_INT8_ONNX = "scorer.int8.onnx"
THRESHOLD_FILE = "threshold.json"
REFERENCE_FILE = "reference.parquet"  # errors and embeddings of held-out rows: the drift reference

# An output folder of `seqae embed` (and `seqae validate --rejects-dir`). Names starting with "_" or
# "." are never read back as input data (Hive/Spark convention).
REJECTS_DIR = "_rejects"
REJECTS_SUFFIX = ".rejects.parquet"
STEPS_DIR = "_steps"  # per-timestamp scores of the long layout (`seqae embed --step-scores`)
QUARANTINE_DIR = "_files"  # under REJECTS_DIR: one JSON record per input file that could not be used
MANIFEST_DIR = "_manifest"
MANIFEST_SUFFIX = ".json"
SUMMARY_FILE = "_manifest.json"
OUTPUT_SUFFIX = ".parquet"
TMP_SUFFIX = ".tmp"
LOCK_FILE = ".seqae.lock"
LEASE_FILE = ".seqae.lease"  # the lock of object stores (seqae.lease)
LOCK_SUFFIX = ".lock"  # _manifest/.<output>.lock: one writer per output at a time

# Key of seqae's JSON in Parquet footers and the output columns the job adds.
PARQUET_METADATA_KEY = "seqae"
LENGTH = "length"
SCORE = "score"
IS_ANOMALY = "is_anomaly"
WINDOW_START = "window_start"
WINDOW_END = "window_end"

# Per-timestamp scores (long layout): one row per series and time step.
STEP_ERROR_MEAN = "step_error_mean"
STEP_ERROR_MAX = "step_error_max"
WINDOWS = "windows"
