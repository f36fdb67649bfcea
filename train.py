"""Train a model on the last year of daily volumes and log it to MLflow.

Usage: python train.py [--start D] [--end D] [--param key=value ...] [--promote]
"""

import sys

from volume_monitor.cli import entry_point

if __name__ == "__main__":
    sys.exit(entry_point(["train", *sys.argv[1:]]))
