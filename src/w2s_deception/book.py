"""Build the book: execute the chapter notebooks with papermill, then render the HTML."""

from __future__ import annotations

import argparse
import html
import logging
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import nbformat
import papermill
import yaml
from jupyter_client.kernelspec import KernelSpecManager
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from papermill.exceptions import PapermillException, PapermillExecutionError

from w2s_deception.charts import write_vega_bundle
from w2s_deception.notebook import VERDICT_COLUMNS, VERDICTS_KEY

ROOT = Path(__file__).resolve().parents[2]
KERNEL = "python3"
STATIC_DIR = Path("book/_static")  # served as _static/ (html_static_path in _config.yml)
_VOLATILE = ("start_time", "end_time", "duration", "input_path", "output_path")
_INSERTED = {"injected-parameters", "papermill-error-cell-tag"}  # cells papermill adds
VERDICTS_START, VERDICTS_END = "<!-- verdicts:start -->", "<!-- verdicts:end -->"
# Torch threads of the build's trainings, fixed rather than taken from the machine's core count:
# CPU float sums depend on the thread count (the README says by how much), so with these any
# machine with the same torch build and instruction set reproduces the book's numbers bit for bit.
# One thread each: the build keeps both cores busy with processes, and a second thread costs CPU time
# (measured alone here: `nano`'s pre-training 37.8 CPU-s on two threads against 32.9 on one; a `micro`
# SFT + SimPO run 37.5 against 29.5), which side by side is time taken from the other processes.
TRAIN_THREADS = 1  # the reward-modeling, SimPO and DPO trainings run before the notebooks
KERNEL_THREADS = 1  # each notebook kernel, and the trainings inside it


class ChapterError(Exception):
    """A chapter could not be executed; the message is one line naming it."""


def toc_files(entries: Sequence[dict[str, Any]]) -> Iterator[str]:
    """Files of a jb-book toc subtree, in reading order."""
    for entry in entries:
        if "file" in entry:
            yield entry["file"]
        for key in ("parts", "chapters", "sections"):
            yield from toc_files(entry.get(key, []))


def toc_paths(root: Path) -> tuple[str, list[str]]:
    """The root page and the chapter files of `_toc.yml`, relative to `root`, without suffix."""
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    page, *files = (f.removesuffix(".md").removesuffix(".ipynb") for f in [toc["root"], *toc_files([toc])])
    return page, files


def toc_chapters(root: Path) -> list[str]:
    """Chapter names (file stems) listed in `_toc.yml`, in reading order."""
    return [Path(file).stem for file in toc_paths(root)[1]]


def check_kernel() -> None:
    """Fail unless the `python3` kernel runs this interpreter, so notebooks see this venv."""
    argv0 = KernelSpecManager().get_kernel_spec(KERNEL).argv[0]
    # jupyter_client substitutes sys.executable for a bare "python"/"python3"/"python3.X".
    bare = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
    if argv0 not in bare and argv0 != sys.executable:
        raise SystemExit(
            f"kernel {KERNEL!r} runs {argv0}, not {sys.executable}; fix with:\n"
            f"  {sys.executable} -m ipykernel install --sys-prefix --name {KERNEL}"
        )


def check_parameters(source: Path, parameters: dict[str, Any]) -> None:
    """Refuse parameters the notebook's `parameters` cell lacks (papermill would only warn)."""
    declared = papermill.inspect_notebook(str(source))
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise ChapterError(f"{source.stem}: parameters cell does not declare {', '.join(unknown)}")


def normalise(path: Path) -> None:
    """Drop papermill's timestamps, paths and random ids, so re-runs differ only in results."""
    nb = nbformat.read(path, as_version=4)
    for meta in [nb.metadata.get("papermill", {})] + [
        cell.metadata.get("papermill", {}) for cell in nb.cells
    ]:
        for key in _VOLATILE:
            meta.pop(key, None)
    for index, cell in enumerate(nb.cells):
        cell.metadata.pop("execution", None)
        if _INSERTED & set(cell.metadata.get("tags", [])):
            cell.id = f"papermill-{index}"
    nbformat.write(nb, path)


def execute_chapter(root: Path, name: str, parameters: dict[str, Any]) -> Path:
    """Execute `notebooks/<name>.ipynb` into `book/<name>.ipynb` with the repo root as cwd."""
    source, target = root / "notebooks" / f"{name}.ipynb", root / "book" / f"{name}.ipynb"
    check_parameters(source, parameters)
    try:
        papermill.execute_notebook(
            str(source),
            str(target),
            parameters=parameters,
            kernel_name=KERNEL,
            cwd=str(root),
            progress_bar=False,
            log_output=False,
        )
    except PapermillExecutionError as err:
        raise ChapterError(
            f"{name}: {err.ename}: {err.evalue} (cell {err.exec_count}; see book/{name}.ipynb)"
        ) from err
    except (PapermillException, CellTimeoutError, DeadKernelError) as err:
        raise ChapterError(f"{name}: {type(err).__name__}: {err}".splitlines()[0]) from err
    finally:
        if target.exists():
            normalise(target)
    return target


# Chapters whose trainings `prepare_chapter` runs before the notebooks. Decided here, not in a module
# the run cache hashes, so adding a chapter retrains nothing.
TRAINED_CHAPTERS = ("reward_modeling", "simpo", "dpo")
# The trained chapters whose runs a notebook reads, where not all of them: with `--jobs` > 1 it starts as
# soon as those are trained. LLaMA, α and honesty train their own policies from pre-trained rungs and
# teachers that SimPO's trainings train too, so they need not wait for the reward models' features (the
# longest training).
NOTEBOOK_NEEDS = {"reward_modeling": ("reward_modeling",), "simpo": ("simpo",), "dpo": ("dpo",),
                  "llama": ("simpo",), "alpha": ("simpo",), "honesty": ("simpo",)}
# Side by side only: runs a notebook would train inside itself that need only some trainings, computed
# ahead in a process of their own on the kernel's thread count (so the numbers are the notebook's) as soon
# as those are done. The mitigations chapter's SimPO students need SimPO's teachers; its notebook must wait
# for the reward models too, and would otherwise train them all after the longest training.
AHEAD = {"mitigations": ("simpo",)}


@dataclass(frozen=True)
class Training:
    """Runs the side-by-side build computes in a process of its own before the notebooks that read them."""

    name: str  # a chapter, or `features <rung>/<split>`
    threads: int
    needs: tuple[str, ...] = ()  # trainings that must be done first


def side_by_side_trainings(names: Sequence[str], profile: str) -> list[Training]:
    """What the side-by-side build trains before (and while) the notebooks `names` execute.

    Besides the chapters' trainings: the features of the rungs not pre-trained here (SmolLM2 on `cpu`),
    one process per split from the start, on one thread. They are the reward models' longest runs; a
    feature row does not depend on the thread count (checked bit for bit on a whole split), and alone on
    this machine two one-thread processes compute 1.2x the tokens per second of one two-thread process
    (1,235 vs 1,014). The reward-modeling training finds them computed, or waits for them (the run cache's
    entry locks)."""
    out = [Training(n, TRAIN_THREADS) for n in names if n in TRAINED_CHAPTERS]
    if "reward_modeling" in names:
        out += [Training(f"features {rung}/{split}", KERNEL_THREADS) for rung, split in _features_ahead(profile)]
    chapters = {t.name for t in out}
    out += [Training(n, KERNEL_THREADS, tuple(d for d in AHEAD[n] if d in chapters)) for n in names if n in AHEAD]
    return out


def _features_ahead(profile: str) -> list[tuple[str, str]]:
    """(rung, split) of the reward-modeling chapter's features on rungs not pre-trained here, largest split first."""
    from w2s_deception.config import get_config
    from w2s_deception.experiments import HARMLESS

    cfg = get_config(profile)
    if cfg.finetune != "head":
        return []
    return [(r, split) for r in cfg.rungs if cfg.rung(r).source != "scratch" for split in ("helpful", *HARMLESS)]


def prepare_chapter(name: str, profile: str) -> None:
    """Compute one `Training` (by name): a chapter's trainings before its notebook, which runs the same
    calls and then only reads the warm cache (for mitigations, its SimPO students); nothing for any
    other name."""
    from w2s_deception.config import get_config
    from w2s_deception.experiments import open_cache, run_rm_matrix
    from w2s_deception.features import feature_entry
    from w2s_deception.mitigations import bootstrap_runs, filter_runs
    from w2s_deception.preference import po_config, run_po_matrix

    if name.startswith("features "):
        cfg = get_config(profile)
        rung, split = name.removeprefix("features ").split("/")
        feature_entry(cfg, rung, split, open_cache(cfg))
    elif name == "reward_modeling":
        cfg = get_config(profile)
        run_rm_matrix(cfg, open_cache(cfg))
    elif name in ("simpo", "dpo"):
        cfg = po_config(profile)
        run_po_matrix(cfg, open_cache(cfg), name)
    elif name == "mitigations":  # its notebook's SimPO students (the defaults of its parameters cell)
        cfg = po_config(profile)
        cache = open_cache(cfg)
        filter_runs(cfg, cache)
        bootstrap_runs(cfg, cache)


def store_test_outputs(root: Path, names: Sequence[str]) -> None:
    """Execute `notebooks/<name>.ipynb` in place under the smoke profile: the outputs nbval checks.

    Run in `notebooks/`, the folder nbval runs them in, so chapters write nothing into `book/`
    (`w2s_deception.notebook.book_root`).
    """
    os.environ["W2S_PROFILE"] = "smoke"  # read by each notebook's parameters cell
    for name in names:
        path = root / "notebooks" / f"{name}.ipynb"
        papermill.execute_notebook(str(path), str(path), kernel_name=KERNEL, cwd=str(path.parent),
                                   progress_bar=False)
        normalise(path)
        nb = nbformat.read(path, as_version=4)
        nb.metadata.pop("papermill", None)
        for cell in nb.cells:
            cell.metadata.pop("papermill", None)
        nbformat.write(nb, path)
        print(f"stored smoke outputs of {name}", flush=True)


def chapter_verdicts(path: Path) -> dict[str, Any] | None:
    """The verdicts an executed chapter recorded (`notebook.record_verdicts`; the last if several)."""
    found = None
    for cell in nbformat.read(path, as_version=4).cells:
        for out in cell.get("outputs", []):
            found = out.get("metadata", {}).get(VERDICTS_KEY, found)
    return found


def chapter_title(path: Path) -> str:
    """The first Markdown heading of an executed chapter (its title in the book), else its file stem."""
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem


def render_verdicts(records: Sequence[tuple[str, str, dict[str, Any]]]) -> str:
    """HTML for the intro: a tally of the verdicts by class (colour-coded), then one row per claim
    (chapter link, claim, evidence; verdict badge), narrow enough for a phone screen.

    `records` holds (link to the chapter's page relative to the intro, chapter title, recorded
    verdicts) in reading order.
    """
    from w2s_deception.stats import CLASSES

    rows = [(href, title, payload.get("profile"), row) for href, title, payload in records for row in payload["verdicts"]]
    if not rows:
        return "*No chapter has recorded verdicts yet: build the book with `python -m w2s_deception.book`.*"
    counts = {c: sum(r[3]["verdict"] == c for r in rows) for c in CLASSES}
    css = lambda c: "w2s-" + c.split(" on ")[0].replace(" ", "-")  # noqa: E731
    tally = " ".join(f'<span class="w2s-badge {css(c)}">{n} {html.escape(c)}</span>' for c, n in counts.items())
    profiles = sorted({str(p or "—") for _, _, p, _ in rows})
    out = [f'<p class="w2s-tally"><b>{len(rows)} claims</b> ({", ".join(profiles)} profile): {tally}</p>',
           '<table class="w2s-verdicts"><thead><tr><th>claim and evidence</th><th>verdict</th></tr></thead><tbody>']
    for href, title, _, row in rows:
        claim, verdict, evidence = (html.escape(" ".join(str(row[c]).split())) for c in VERDICT_COLUMNS)
        out.append(f'<tr><td><a href="{html.escape(href)}">{html.escape(title)}</a>: {claim}'
                   f'<br><small>{evidence}</small></td><td><span class="w2s-badge {css(row["verdict"])}">{verdict}'
                   "</span></td></tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def update_intro(root: Path) -> bool:
    """Regenerate the verdicts table between the markers of the book's root page from the executed
    chapters in `book/`; False (and nothing written) when the page has no markers."""
    page, files = toc_paths(root)
    intro = root / f"{page}.md"
    text = intro.read_text(encoding="utf-8") if intro.is_file() else ""
    if VERDICTS_START not in text or VERDICTS_END not in text:
        return False
    records = []
    for file in files:
        executed = root / f"{file}.ipynb"
        payload = chapter_verdicts(executed) if executed.is_file() else None
        if payload:
            href = os.path.relpath(root / f"{file}.html", intro.parent)
            records.append((href, chapter_title(executed), payload))
    head, rest = text.split(VERDICTS_START, 1)
    _, tail = rest.split(VERDICTS_END, 1)
    new = f"{head}{VERDICTS_START}\n{render_verdicts(records)}\n{VERDICTS_END}{tail}"
    if new != text:
        intro.write_text(new, encoding="utf-8")
    return True


def build_html(root: Path) -> int:
    """Render the book with jupyter-book (which never executes) and return its exit code."""
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    return subprocess.run([str(jupyter_book), "build", str(root)], check=False).returncode


def _run_chapter(root: Path, name: str, profile: str) -> tuple[str, str | None, float]:
    """Execute one chapter: (name, the error line or None, seconds)."""
    start = time.perf_counter()
    try:
        execute_chapter(root, name, {"profile": profile})
    except ChapterError as err:
        return name, str(err), time.perf_counter() - start
    return name, None, time.perf_counter() - start


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """While open, torch in this process and in kernels started from it (`OMP_NUM_THREADS`, read
    when torch is imported) uses `n` threads."""
    import torch

    before, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        if env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env


def _report(name: str, error: str | None, seconds: float) -> bool:
    """Print one executed chapter's outcome; True when it succeeded."""
    print(f"FAILED {error} [{seconds:.1f} s]" if error else f"executed {name} [{seconds:.1f} s]", flush=True)
    return error is None


def _report_training(name: str, error: str | None, seconds: float, threads: int) -> None:
    """Print one training's outcome (a failure is recorded by the notebook that reads it, which meets it again)."""
    if error:
        print(f"{name}: training failed ({error}); executing the notebook to record the error", flush=True)
    else:
        print(f"trained {name} [{seconds:.1f} s on {threads} thread{'s' * (threads != 1)}]", flush=True)


def _train_here(name: str, profile: str) -> tuple[str, str | None, float, int]:
    """`prepare_chapter` in this process: (name, the error or None, seconds, torch threads)."""
    import torch

    start, error = time.perf_counter(), None
    try:
        prepare_chapter(name, profile)
    except Exception as err:  # noqa: BLE001 - reported; the notebook records it
        error = f"{type(err).__name__}: {err}"
    return name, error, time.perf_counter() - start, torch.get_num_threads()


class _NoTerminal:
    """A stream that says it is not a terminal: tqdm then draws no bars (the bars of trainings running
    side by side would overwrite each other on one line), and the run log shows progress instead."""

    def __init__(self, stream: Any):
        self._stream = stream

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _train_in_process(name: str, profile: str, threads: int, passive: bool) -> tuple[str, str | None, float, int]:
    """`_train_here` in a fresh (spawned) process on `threads` torch threads, logging one line per run.

    `passive`: OpenMP threads sleep instead of spinning while they wait, for when the build runs more
    threads than the machine has cores; spinning threads then steal the cores the others need
    (measured here: two 2-thread trainings side by side took 8.4x as long as one alone, 1.5x with
    passive waiting). Set before torch is imported, which is when OpenMP reads it."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if passive:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(threads)
    sys.stderr = _NoTerminal(sys.stderr)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # its loading/saving bars ignore isatty
    hf_logging.set_verbosity_error()  # and its config warnings would repeat once per model loaded
    with _runs_logged_to_stderr(f"[{name}] "):
        return _train_here(name, profile)


def execute_all(root: Path, names: Sequence[str], profile: str) -> bool:
    """Train, then execute, the chapters one at a time in this process (a terminal shows each training's
    progress bars); trainings on `TRAIN_THREADS`, kernels on `KERNEL_THREADS`. True when all succeeded."""
    with nullcontext() if sys.stderr.isatty() else _runs_logged_to_stderr(), _torch_threads(TRAIN_THREADS):
        for name in names:
            if name in TRAINED_CHAPTERS:
                _report_training(*_train_here(name, profile))
    with _torch_threads(KERNEL_THREADS):
        return all([_report(*_run_chapter(root, name, profile)) for name in names])


def execute_side_by_side(root: Path, names: Sequence[str], profile: str, jobs: int) -> bool:
    """Run the `side_by_side_trainings` each in its own process as soon as the trainings it needs are done
    (the chapters' own at once, on `TRAIN_THREADS`), and execute each notebook, `jobs` at a time on
    `KERNEL_THREADS` threads each, as soon as the trainings it reads are done (`NOTEBOOK_NEEDS`, and its
    `AHEAD` runs). The run cache's entry locks make a run that two trainings share (a pre-trained rung, an
    SFT model) train once. Every run is computed on the same thread count as one at a time, or on one
    that cannot change it, so the numbers are the same; the cores idle less. True when all notebooks
    succeeded; a failing chapter stops none of the others."""
    trainings = side_by_side_trainings(names, profile)
    scheduled = {t.name for t in trainings}
    passive = sum(t.threads for t in trainings) + jobs * KERNEL_THREADS > (os.cpu_count() or 1)
    pending, waiting, done, ok = list(trainings), list(names), set(), True

    def reads(name: str) -> set[str]:
        return (set(NOTEBOOK_NEEDS.get(name, TRAINED_CHAPTERS)) | ({name} if name in AHEAD else set())) & scheduled

    # trainers spawn (fresh interpreters, so that OpenMP reads their settings); papermill changes its
    # process's working directory while it runs, so each notebook gets its own process too
    with (_torch_threads(KERNEL_THREADS),
          ProcessPoolExecutor(max(len(trainings), 1), mp_context=multiprocessing.get_context("spawn")) as trainers,
          ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as kernels):
        running: dict[Future, bool] = {}
        while running or waiting or pending:
            for t in [t for t in pending if set(t.needs) <= done]:
                pending.remove(t)
                running[trainers.submit(_train_in_process, t.name, profile, t.threads, passive)] = True
            for name in [n for n in waiting if reads(n) <= done]:
                waiting.remove(name)
                running[kernels.submit(_run_chapter, root, name, profile)] = False
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                if running.pop(future):
                    result = future.result()
                    _report_training(*result)
                    done.add(result[0])
                else:
                    ok = _report(*future.result()) and ok
    return ok


def parse_args(argv: Sequence[str] | None, chapters: list[str]) -> argparse.Namespace:
    """Command-line options; `--chapters` defaults to every notebook chapter in the toc."""
    parser = argparse.ArgumentParser(prog="python -m w2s_deception.book", description=__doc__)
    parser.add_argument("--profile", default="cpu", help="model ladder: cpu, smoke or paper")
    parser.add_argument("--chapters", nargs="+", choices=chapters, default=chapters)
    parser.add_argument("--skip-execute", action="store_true", help="render book/ as it is")
    parser.add_argument("--skip-html", action="store_true", help="execute notebooks only")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help=f"notebooks executed at once, each kernel on {KERNEL_THREADS} thread (default: one per "
                             "CPU core); above 1, the trained chapters also train side by side")
    parser.add_argument("--store-test-outputs", action="store_true",
                        help="re-execute notebooks/ in place with the smoke profile (the outputs nbval compares)")
    return parser.parse_args(argv)


@contextmanager
def _runs_logged_to_stderr(prefix: str = "") -> Iterator[None]:
    """While open, the package's INFO lines (one per computed cache entry, `cache.RunCache`) go to
    stderr with the time and `prefix`: a build log has no progress bars, and this shows how far it is."""
    log = logging.getLogger("w2s_deception")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"%(asctime)s {prefix}%(message)s", datefmt="%H:%M:%S"))
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def main(argv: Sequence[str] | None = None, root: Path = ROOT) -> int:
    """Execute the selected chapters in toc order, then build the HTML only if all succeeded."""
    notebooks = [c for c in toc_chapters(root) if (root / "notebooks" / f"{c}.ipynb").exists()]
    args = parse_args(argv, notebooks)
    if args.store_test_outputs:
        store_test_outputs(root, args.chapters)
        return 0
    write_vega_bundle(root / STATIC_DIR)
    if not args.skip_execute:
        check_kernel()
        selected = [c for c in notebooks if c in args.chapters]
        execute = execute_all if args.jobs <= 1 else partial(execute_side_by_side, jobs=args.jobs)
        if not execute(root, selected, args.profile):
            print("HTML not built: fix the chapters above and rerun.", file=sys.stderr)
            return 1
    update_intro(root)
    return 0 if args.skip_html else build_html(root)


if __name__ == "__main__":
    sys.exit(main())
