"""Score a day (default: yesterday) with the production model, write results, alert.

Usage: python deploy.py [--date D] [--dry-run] [--force]
"""

import sys

from volume_monitor.cli import main

if __name__ == "__main__":
    sys.exit(main(["deploy", *sys.argv[1:]]))
