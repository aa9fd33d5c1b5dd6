"""Names shared by the Keras model, the ONNX graphs and the embed job: defined once, here."""

INPUT_VALUES = "values"
INPUT_LENGTHS = "lengths"

EMBEDDING = "embedding"
RECON_ERROR = "recon_error"
STEP_ERROR = "step_error"
PRED_ERROR = "pred_error"

MODEL_FILE = "model.keras"
METADATA_FILE = "seqae.json"
LOSS_PLOT_FILE = "loss.png"
ENCODER_ONNX = "encoder.onnx"
SCORER_ONNX = "scorer.onnx"
SCORER_FP16_ONNX = "scorer.fp16.onnx"
