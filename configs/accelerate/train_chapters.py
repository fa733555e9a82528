"""Train the runs of book chapters into the run cache, in every process of an `accelerate launch`.

    accelerate launch --config_file configs/accelerate/fsdp.yaml \\
        configs/accelerate/train_chapters.py --profile paper reward_modeling simpo dpo
    python -m w2s_deception.book --profile paper   # then renders from the warm cache

`python -m w2s_deception.book` trains a chapter's runs and then executes its notebook; launched on
several processes it would execute every notebook once per process. This does the first half only
(`book.prepare_chapter`), so that it can run under `accelerate launch`: every process walks the same
runs in the same order, trains each one together with the others (`train.fit` builds an
`Accelerator`, which picks up the launch's DDP or FSDP settings) and scores it; the main process
publishes each run's cache entry, and the others read it (`RunCache.get_or_compute`). Run the book
afterwards in one process. On CPUs (gloo), launch with `--multi_gpu --num_processes N` (README,
"Several processes").
"""

from __future__ import annotations

import argparse
import sys

from w2s_deception.book import TRAINED_CHAPTERS, prepare_chapter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="paper", help="cpu, smoke or paper (default: paper)")
    parser.add_argument("chapters", nargs="+", choices=TRAINED_CHAPTERS)
    args = parser.parse_args(argv)
    for chapter in args.chapters:
        prepare_chapter(chapter, args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
