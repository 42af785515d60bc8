"""`python -m evaluation --workspace DIR --run ID ...`: see evaluation/cli.py."""
import sys

from evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main())
