"""Score a day (default: yesterday) with the production model, write results, alert.

Usage: python deploy.py [--date D] [--dry-run] [--force]
"""

import sys

from volume_monitor.cli import entry_point

if __name__ == "__main__":
    sys.exit(entry_point(["deploy", *sys.argv[1:]]))
