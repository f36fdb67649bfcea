"""Train a model on the last year of daily volumes and log it to MLflow.

Usage: python train.py [--start D] [--end D] [--param key=value ...] [--promote]
"""

import sys

from volume_monitor.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
