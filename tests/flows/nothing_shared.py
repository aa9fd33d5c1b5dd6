"""The worker side of ``test_nothing_shared.py``: the retrain flow, then the embed flow, with the data,
the models root and the outputs at the URIs given, in a process whose working folder and home hold
nothing of them (the test starts it so). Prints one JSON line: the promotion and the embed summary.

    python tests/flows/nothing_shared.py DATA MODELS OUT
"""

import json
import sys


def main(data: str, models: str, out: str) -> None:
    from flows.definitions import embed, retrain
    from seqae.config import EmbedConfig, ModelConfig, TrainConfig
    from seqae.drift import DriftPolicy

    promotion = retrain(data, models, "ecg", model=ModelConfig(units=4),
                        train=TrainConfig(max_epochs=2, batch_size=32))
    summary = embed(data, out, models, "ecg", config=EmbedConfig(device="cpu"), drift=DriftPolicy(min_rows=50))
    print(json.dumps({"promotion": promotion, "embed": summary}, default=str))


if __name__ == "__main__":
    main(*sys.argv[1:])
