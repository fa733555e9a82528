"""Time a build of the book through its workflow and say which jobs ran.

    python benchmarks/bench_book.py --runs-dir /tmp/cold-runs      # cold: an empty runs folder
    python benchmarks/bench_book.py                                # warm: must train nothing
    python benchmarks/bench_book.py --edit dpo                     # one notebook changed: only that chapter

Prints wall time, the CPU time of the build and all its jobs, the cores they kept busy, and whether the
wall time is within 1.1 × CPU time / cores (both cores busy); then the jobs the workflow ran, by rule.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--runs-dir", help="the run cache (default: $W2S_RUNS_DIR, else runs/)")
    parser.add_argument("--edit", nargs="*", default=[],
                        help="chapters whose notebook to change first (a metadata field: the workflow compares "
                             "contents, so a bare touch re-executes nothing)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--log", type=Path, help="also write the build's output here")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.runs_dir:
        env["W2S_RUNS_DIR"] = args.runs_dir
    originals = {}
    for chapter in args.edit:
        path = ROOT / "notebooks" / f"{chapter}.ipynb"
        originals[path] = path.read_text(encoding="utf-8")
        nb = json.loads(originals[path])
        nb["metadata"]["edited_for_benchmark"] = time.time()
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    start = time.perf_counter()
    try:
        run = subprocess.run([sys.executable, "-m", "w2s_deception.book", "--profile", args.profile,
                              "--jobs", str(args.jobs)], cwd=ROOT, env=env, capture_output=True, text=True,
                             check=False)
    finally:  # the edit only has to make the notebook newer than its chapter; put the file back
        for path, text in originals.items():
            path.write_text(text, encoding="utf-8")
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    output = run.stdout + run.stderr
    if args.log:
        args.log.write_text(output, encoding="utf-8")
    jobs = Counter(re.findall(r"^(?:local)?rule (\w+):", output, re.MULTILINE))
    trained = re.findall(r"wildcards: chapter=(\w+), what=([\w.\-]+)", output)
    chapters = re.findall(r"^executed (\w+)", output, re.MULTILINE)
    computed = len(re.findall(r" entry [0-9a-f]{12} computed in ", output))
    print(f"exit {run.returncode}; wall {wall / 60:.1f} min; CPU {cpu / 60:.1f} min on {args.jobs} cores: "
          f"{cpu / wall:.2f} cores busy on average")
    print(f"wall ≤ 1.1 × CPU / cores: {wall:.0f} s vs {1.1 * cpu / args.jobs:.0f} s → "
          f"{'yes' if wall <= 1.1 * cpu / args.jobs else 'no'}")
    print(f"jobs run: {dict(jobs) or 'none'}; run-cache entries computed: {computed}")
    print(f"trainings run: {', '.join(f'{c}/{w}' for c, w in trained) or 'none'}")
    print(f"chapters executed: {', '.join(chapters) or 'none'}")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
