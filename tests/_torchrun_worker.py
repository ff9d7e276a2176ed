"""One torchrun worker of the two-node test: train from the torchrun environment, dump this rank's weights.

Usage (under torchrun): _torchrun_worker.py SHARDS OUT RESULTS_DIR EPOCHS (one step per epoch on 2 ranks)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from _train_helpers import tiny_losses, tiny_model, tiny_train  # noqa: E402
from fomm_core.training import Trainer  # noqa: E402


def main() -> None:
    shards, out, results, epochs = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(1)
    trainer = Trainer(shards, out, tiny_model(), tiny_losses(gan=1.0), tiny_train(epochs=epochs),
                      log=lambda *a, **k: None)  # rank, world size and rendezvous from torchrun's environment
    try:
        trainer.run()
        weights = {f"{name}.{k}": v for name, m in trainer.models().items() for k, v in m.state_dict().items()}
        torch.save({"weights": weights, "world_size": trainer.info.world_size, "step": trainer.step},
                   results / f"rank{os.environ['RANK']}.pt")
    finally:
        trainer.close()


if __name__ == "__main__":
    main()
