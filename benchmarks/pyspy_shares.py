r"""Shares of one thread's samples by function, from a py-spy profile in raw (collapsed) form.

    .venv/bin/py-spy record -p PID -r 500 -d 10 --threads --nonblocking -f raw -o wall.raw
    .venv/bin/python benchmarks/pyspy_shares.py wall.raw MainThread --top 40

Each function's inclusive share (the samples with it anywhere on the stack) and its own
(the samples with it on top); `.gz` files are read as they are. Add `--gil` to py-spy's
command for the samples in which the thread held the GIL only.
"""

from __future__ import annotations

import argparse
import gzip
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)")


def shares(path: Path, thread: str) -> tuple[int, Counter[str], Counter[str]]:
    """(samples of `thread`, inclusive counts by function, own counts by function)."""
    opener = gzip.open if path.suffix == ".gz" else open
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    with opener(path, "rt") as lines:
        for line in lines:
            stack, _, count = line.rstrip().rpartition(" ")
            frames = stack.split(";")
            if thread not in frames[0]:
                continue
            samples = int(count)
            total += samples
            names = [_LINE.sub(")", frame) for frame in frames[1:]]  # one entry per function, any line
            inclusive.update(dict.fromkeys(set(names), samples))
            if names:
                own[names[-1]] += samples
    return total, inclusive, own


def main() -> None:
    """Print the top functions of the thread by inclusive share."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("profile", type=Path)
    parser.add_argument("thread", help="a part of the thread's label, e.g. MainThread")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    total, inclusive, own = shares(args.profile, args.thread)
    print(f"{total} samples of {args.thread}")
    for name, samples in inclusive.most_common(args.top):
        print(f"{100 * samples / total:5.1f}% inclusive {100 * own[name] / total:5.1f}% own  {name}")


if __name__ == "__main__":
    main()
