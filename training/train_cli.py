"""Entry point placeholder: filled in by the SynHead / training / evaluation work."""
import sys


def main(argv=None) -> int:
    print("not implemented yet", file=sys.stderr)
    return 2
