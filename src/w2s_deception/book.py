"""Build the book: run the workflow (workflow/Snakefile) that trains what the chapters declare, executes
each notebook with papermill into book/, and renders the HTML; and the jobs' own steps (one chapter, the
render)."""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import nbformat
import papermill
import yaml
from jupyter_client.kernelspec import KernelSpecManager
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from papermill.exceptions import PapermillException, PapermillExecutionError

from w2s_deception.cache import default_runs_dir
from w2s_deception.charts import write_vega_bundle
from w2s_deception.config import ConfigError
from w2s_deception.data import DataError, verify_folder
from w2s_deception.notebook import VERDICTS_KEY
from w2s_deception.provenance import stale_chapters, stale_flags, stamp

ROOT = Path(__file__).resolve().parents[2]
KERNEL = "python3"
STATIC_DIR = Path("book/_static")  # served as _static/ (html_static_path in _config.yml)
FAILED_DIR = Path("_build/failed")  # executed notebooks of chapters that failed, with their tracebacks
_VOLATILE = ("start_time", "end_time", "duration", "input_path", "output_path")
_INSERTED = {"injected-parameters", "papermill-error-cell-tag"}  # cells papermill adds
VERDICTS_START, VERDICTS_END = "<!-- verdicts:start -->", "<!-- verdicts:end -->"
# Torch threads of each notebook kernel (and the trainings inside it), and of each training job
# (`trainings.Training.threads`): CPU float sums depend on the thread count, so fixing it makes any machine
# with the same torch build and instruction set compute the same numbers; the build keeps the cores busy
# with jobs instead.
KERNEL_THREADS = 1


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
    # the same environment reached through another path (a link to it, or a path with a space) is this one
    same_env = Path(argv0).parent.parent.resolve() == Path(sys.prefix).resolve()
    if argv0 not in bare and argv0 != sys.executable and not same_env:
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
    """HTML for the intro (`intro.render`): what the book finds, the matrix of claims × settings, every claim folded.

    `records` holds (link to the chapter's page relative to the intro, chapter title, recorded verdicts) in
    reading order.
    """
    from w2s_deception.intro import render

    placebo = any(cell.get("placebo") for _, _, payload in records for check in payload.get("checks", [])
                  for cell in check["cells"])
    return render(records, placebo)


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


def training_params(profile: str, training: Any) -> str:
    """What a training job's results depend on beyond the run cache's keys, for the workflow to re-run it
    when it changes: the training package code (config included) and the data's SHA256SUMS."""
    from w2s_deception.cache import code_version
    from w2s_deception.config import get_config
    from w2s_deception.data import resolve_data_dir

    sums = resolve_data_dir(get_config(profile).data_dir) / "SHA256SUMS"
    digest = hashlib.sha256(sums.read_bytes() if sums.is_file() else b"")
    for module in ("experiments", "preference", "mitigations", "features", "activations", "honesty", "config"):
        digest.update(code_version(module).encode())
    digest.update(repr((training.name, training.needs)).encode())
    return digest.hexdigest()[:16]


def parse_args(argv: Sequence[str] | None, chapters: list[str]) -> argparse.Namespace:
    """Command-line options; `--chapters` defaults to every notebook chapter in the toc."""
    parser = argparse.ArgumentParser(prog="python -m w2s_deception.book", description=__doc__,
                                     epilog="Arguments after `--` go to snakemake, e.g. "
                                            "`-- --profile workflow/profiles/slurm` or `-- --dry-run`.")
    parser.add_argument("--profile", default=os.environ.get("W2S_PROFILE", "cpu"),
                        help="model ladder: cpu, smoke or paper (default: $W2S_PROFILE, else cpu)")
    parser.add_argument("--chapters", nargs="+", choices=chapters, default=chapters)
    parser.add_argument("--skip-execute", action="store_true", help="render book/ as it is")
    parser.add_argument("--skip-html", action="store_true", help="execute notebooks only")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="cores for the workflow's jobs (default: all); each training and kernel uses one")
    parser.add_argument("--chapter", choices=chapters, help=argparse.SUPPRESS)  # one workflow job: execute it
    parser.add_argument("--render", action="store_true", help=argparse.SUPPRESS)  # the workflow's last job
    parser.add_argument("--store-test-outputs", action="store_true",
                        help="re-execute notebooks/ in place with the smoke profile (the outputs nbval compares)")
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)  # the workflow's jobs: its --directory
    parser.add_argument("snakemake", nargs="*", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def snakemake_command(root: Path, args: argparse.Namespace, notebooks: list[str],
                      forced: Sequence[str] = ()) -> list[str]:
    """The snakemake call that builds the selected chapters (and the HTML unless --skip-html), re-executing
    the `forced` ones whatever their files' times say."""
    chapters = [] if args.chapters == notebooks else args.chapters
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "workflow" / "Snakefile"),
           "--directory", str(root), "--cores", str(args.jobs), "--rerun-incomplete", "--keep-going",
           "--config", f"profile={args.profile}", f"chapters={chapters!r}".replace("'", '"'),
           f"html={not args.skip_html}"]
    if "--profile" not in args.snakemake:  # local: the machine's memory bounds the jobs started at once
        import psutil

        cmd += ["--resources", f"mem_mb={int(psutil.virtual_memory().total / 2**20 * 0.9)}"]
    if forced:
        cmd += ["--forcerun", *(f"book/{name}.ipynb" for name in forced)]
    return cmd + list(args.snakemake)


def _die_with_parent() -> None:
    """In the snakemake child: get SIGTERM when the build's process ends, even by SIGKILL (Linux), so that
    snakemake stops its jobs; each job also watches the build's pid (`trainings.watch_parent`)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setpgrp()


def run_workflow(cmd: list[str], grace: float = 20.0) -> int:
    """Run snakemake; Ctrl-C or SIGTERM of this process stops it and every job it started: they get SIGTERM
    at once, whatever is left after `grace` seconds SIGKILL, and the build exits with 128 + the signal."""
    import signal

    # no progress bars in the jobs (e.g. transformers' GGUF conversion, which ignores isatty): the log shows
    # one line per computed run instead
    env = {**os.environ, "W2S_BUILD_PID": str(os.getpid()), "TQDM_DISABLE": "1",
           "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    proc = subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent)
    stopped: list[int] = []

    def stop(signum: int, _frame: Any) -> None:
        # Only signal here: the main thread may be inside proc.wait(), whose lock a handler must not wait on.
        # snakemake and its jobs share one process group (`_die_with_parent`); SIGTERM reaches every job at
        # once, which snakemake alone would only do after its running jobs finish.
        stopped.append(signum)
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    deadline = None
    while True:
        try:
            code = proc.wait(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            if stopped and deadline is None:
                deadline = time.monotonic() + grace
            if deadline is not None and time.monotonic() > deadline:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
    if stopped:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything left in its process group
        print(f"build stopped ({signal.Signals(stopped[0]).name}); a rerun resumes from the run cache", file=sys.stderr)
        return 128 + stopped[0]
    return code


def execute_one(root: Path, name: str, profile: str) -> int:
    """One workflow job: execute a chapter's notebook (its trainings are in the run cache)."""
    from w2s_deception.trainings import watch_parent

    if os.environ.get("W2S_BUILD_PID"):
        watch_parent(int(os.environ["W2S_BUILD_PID"]))
    os.environ["OMP_NUM_THREADS"] = str(KERNEL_THREADS)
    start = time.perf_counter()
    try:
        execute_chapter(root, name, {"profile": profile})
        stamp(root, name, profile, {"profile": profile})
    except ChapterError as err:
        # the workflow deletes a failed job's output: keep the executed notebook, traceback included
        executed, kept = root / "book" / f"{name}.ipynb", root / FAILED_DIR / f"{name}.ipynb"
        if executed.exists():
            kept.parent.mkdir(parents=True, exist_ok=True)
            executed.replace(kept)
        print(f"FAILED {err} [{time.perf_counter() - start:.1f} s]".replace(f"see book/{name}.ipynb",
                                                                          f"see {kept.relative_to(root)}"),
              file=sys.stderr, flush=True)
        return 1
    print(f"executed {name} [{time.perf_counter() - start:.1f} s]", flush=True)
    return 0


def main(argv: Sequence[str] | None = None, root: Path = ROOT) -> int:
    """Build the book through the workflow (workflow/Snakefile): trainings, then chapters, then HTML."""
    if argv is None and "--root" in sys.argv:  # a workflow job: the chapters of the build's root
        root = Path(sys.argv[sys.argv.index("--root") + 1]).resolve()
    notebooks = [c for c in toc_chapters(root) if (root / "notebooks" / f"{c}.ipynb").exists()]
    args = parse_args(argv, notebooks)
    if args.store_test_outputs:
        store_test_outputs(root, args.chapters)
        return 0
    if args.chapter:
        return execute_one(root, args.chapter, args.profile)
    if args.render or args.skip_execute:
        write_vega_bundle(root / STATIC_DIR)  # the site's charts need it; executing chapters does not
        update_intro(root)
        return 0 if args.skip_html else build_html(root)
    check_kernel()
    try:
        forced = preflight(root, args.profile, args.chapters)
    except (DataError, ConfigError) as err:
        print(f"FAILED {err}", file=sys.stderr, flush=True)
        return 1
    return run_workflow(snakemake_command(root, args, notebooks, forced))


def flags_dir(root: Path, profile: str) -> Path:
    """Where the workflow keeps its training jobs' flags: beside the run cache the chapters read
    (`cache.default_runs_dir`), relative to the build's `root` when that is relative."""
    return root / default_runs_dir() / ".workflow" / profile


def preflight(root: Path, profile: str, chapters: Sequence[str]) -> list[str]:
    """Before the workflow runs: check every data file against SHA256SUMS (a DataError names the first that
    differs), drop the flags of training jobs whose runs are gone from the cache, and return the chapters
    whose executed notebooks are stale (`provenance.why_stale`), each said on stderr, to be re-executed."""
    from w2s_deception.config import get_config

    count = verify_folder(get_config(profile).data_dir)
    print(f"data: {count} files match SHA256SUMS", file=sys.stderr, flush=True)
    runs = default_runs_dir()
    for flag in stale_flags(flags_dir(root, profile), runs):
        print(f"re-running training {flag.parent.name}/{flag.stem}: its runs are not all in {runs}", file=sys.stderr)
        flag.unlink()
    stale = stale_chapters(root, chapters, profile, runs, VERDICTS_KEY)
    for name, why in stale.items():
        print(f"re-executing {name}: book/{name}.ipynb is stale ({why})", file=sys.stderr, flush=True)
    return list(stale)


if __name__ == "__main__":
    sys.exit(main())
