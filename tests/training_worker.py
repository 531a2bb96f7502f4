"""One tiny training run in its own process, for the distributed and kill -9 tests.

usage: python tests/training_worker.py OUT_DIR [--epochs N] [--no-norm]
       torchrun --standalone --nproc_per_node N tests/training_worker.py OUT_DIR --no-norm
"""

import argparse
import sys

from genaug.config import TrainConfig
from genaug.training import train
from training_helpers import pocket_splits, tiny_net


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--no-norm", action="store_true", help="a model without BatchNorm")
    args = parser.parse_args()
    splits = pocket_splits(labels_per_class=5, val_per_class=5)
    logging = {"progress": False, "tensorboard": True}
    config = TrainConfig(recipe="pocket", epochs=args.epochs, batch_size=16, lr=0.1, logging=logging)
    result = train(config, splits, args.out_dir, model=tiny_net(norm=not args.no_norm))
    # one write: both ranks share the pipe, and print() writes the text and its newline separately
    sys.stdout.write(f"rank done: world {result.world_size}, test top-1 {result.test['top1']:.2f}\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
