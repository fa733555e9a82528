"""Run cache: one folder per trained model holding its per-pair results and a JSON record.

An entry lives at `<root>/<kind>/<run_key(spec)>/` and holds `results.parquet`, any files
the computation wrote (e.g. weights) and, written last, `record.json` with the spec, timing
and a sha256 of every file. Entries are built in a temp folder and renamed into place, so a
killed run never leaves a half-written entry; corrupt entries are moved aside, not served.
A lock file per entry (`<kind>/.lock-<key>`) lets processes that share a runs folder compute
each entry once: the others wait for it and read it.

CLI: `python -m w2s_deception.cache {list,verify} [--runs-dir DIR]`.
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from filelock import FileLock

from . import numerics

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNS_DIR_ENV = "W2S_RUNS_DIR"
RESULTS = "results.parquet"
RECORD = "record.json"
RESERVED = ("kind", "key", "spec", "created", "wall_seconds", "cpu_seconds", "files")
LIST_COLUMNS = ["kind", "key", "created", "wall_seconds", "cpu_seconds", "n_rows", "ok"]


class CacheError(RuntimeError):
    """A cache problem: unusable runs folder, missing or corrupt entry."""


def default_runs_dir() -> Path:
    """Return $W2S_RUNS_DIR, else `<repo root>/runs`."""
    return Path(os.environ.get(RUNS_DIR_ENV) or REPO_ROOT / "runs")


# Package modules no run's code key hashes, and why: the config's values enter every run's spec (so an
# edit to a chapter's defaults retrains nothing that it does not change), and the cache stores results
# without computing them. Every other module a run's code imports, directly or not, is hashed.
KEY_EXEMPT = {"config": "its values enter every run's spec", "cache": "stores results, computes none"}


def code_version(module: str, package: str = __package__) -> str:
    """Hash (12 hex) the code a run executes: the module that computes it and every package module it
    imports, directly or not (found from the source, `imported_modules`), bar `KEY_EXEMPT`. An edit to any
    of them changes the key; an edit elsewhere (a chart, a notebook) retrains nothing.

    Hashed once per process: a run must be keyed by the code it executes, and a module edited on disk
    while a long job runs is not the code that job imported.
    """
    return _code_version(module.rsplit(".", 1)[-1], package)


@functools.cache
def _code_version(module: str, package: str) -> str:
    digest = hashlib.sha256()
    for name in sorted(imported_modules(module, package) - set(KEY_EXEMPT)):
        digest.update(f"{name}\0{code_text(_module_source(name, package))}\0".encode())
    return digest.hexdigest()[:12]


def _module_source(name: str, package: str) -> str:
    """The source text of a package module."""
    spec = importlib.util.find_spec(f"{package}.{name}")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"no module {package}.{name} to hash")
    return Path(spec.origin).read_text(encoding="utf-8")


@functools.cache
def imported_modules(module: str, package: str = __package__) -> frozenset[str]:
    """`module` and every module of `package` it imports, directly or through others (relative or absolute
    imports anywhere in the source, inside functions too), by name within the package."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        tree = ast.parse(_module_source(name, package))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 and node.module:  # from .x import y
                    todo.append(node.module.split(".")[0])
                elif node.level == 1:  # from . import x, y
                    todo.extend(alias.name for alias in node.names)
                elif node.module and node.module.split(".")[0] == package:  # from package.x import y
                    parts = node.module.split(".")
                    todo.extend([parts[1]] if len(parts) > 1 else [alias.name for alias in node.names])
            elif isinstance(node, ast.Import):
                todo.extend(alias.name.split(".")[1] for alias in node.names
                            if alias.name.startswith(f"{package}.") and alias.name.count(".") >= 1)
    return frozenset(n for n in seen if importlib.util.find_spec(f"{package}.{n}") is not None)


def code_text(source: str) -> str:
    """What a module's source computes: its syntax tree without docstrings, so comments, docstrings and
    layout can be edited without re-keying (and re-running) every run that depends on the module."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def _jsonable(value: object) -> str | int | float | bool:
    """Encode the non-JSON values a spec or record may hold: paths as str, numpy scalars as Python ones."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot put {type(value).__name__} {value!r} in a run spec or record; use JSON types or Path")


def _canonical(value: object) -> str:
    """Return the canonical JSON text of `value` (sorted keys, compact, Paths as str, tuples as lists)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_jsonable)


def run_key(spec: Mapping) -> str:
    """Hash (16 hex) the canonical JSON of everything that determines a run's result."""
    return hashlib.sha256(_canonical(dict(spec)).encode()).hexdigest()[:16]


def _sha256(path: Path) -> str:
    """Return the sha256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Entry:
    """A complete cache entry: its folder and its record."""

    path: Path
    record: dict

    @cached_property
    def results(self) -> pd.DataFrame:
        """The per-pair results table."""
        return pd.read_parquet(self.path / RESULTS)

    def file(self, name: str) -> Path:
        """Return the path of a file stored in this entry, raising CacheError if absent."""
        path = self.path / name
        if not path.exists():
            raise CacheError(f"entry {self.path} has no file {name!r}")
        return path


def verify(entry: Entry) -> list[str]:
    """List problems of an entry: wrong key, missing files, hash mismatches (empty if sound)."""
    files = entry.record.get("files", {})
    problems = [] if RESULTS in files else [f"record lists no {RESULTS}"]
    if entry.record.get("key") != entry.path.name:
        problems.append(f"record key {entry.record.get('key')!r} does not match folder name")
    for name, digest in files.items():
        path = entry.path / name
        if not path.is_file():
            problems.append(f"missing file {name}")
        elif _sha256(path) != digest:
            problems.append(f"hash mismatch {name}")
    return problems


def _open(path: Path) -> tuple[Entry | None, list[str]]:
    """Read the entry at `path` and return it with its problems (None if the record is unreadable)."""
    try:
        record = json.loads((path / RECORD).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return None, [f"unreadable {RECORD}: {exc}"]
    entry = Entry(path, record)
    return entry, verify(entry)


def _process_group() -> tuple[int, int]:
    """(rank, world size) of an initialised torch.distributed process group; (0, 1) without one."""
    dist = sys.modules.get("torch.distributed")  # never imports torch: a process group needs it imported
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# This machine, as temp folders name it: a runs folder shared by a cluster's nodes holds temp folders of
# several machines, and only this one's processes can be checked for life.
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _temp_prefix(key: str) -> str:
    """Prefix of the temp folder an entry is built in: its key, this machine and this process."""
    return f".tmp-{key}-{_HOST}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    """Tell whether process `pid` still runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Every entry this process has read or computed, as "<kind>/<key>": what a chapter records it was built from
# (`notebook.record_verdicts`) and what a training job records it produced, so that a build can tell when
# its outputs no longer match the run cache.
_TOUCHED: set[str] = set()


def touched() -> list[str]:
    """The entries ("<kind>/<key>") this process has read or computed so far, sorted."""
    return sorted(_TOUCHED)


def missing_entries(root: str | Path, entries: Iterable[str]) -> list[str]:
    """Those of `entries` ("<kind>/<key>") that have no complete entry under the runs folder `root`."""
    return [e for e in entries if not (Path(root) / e / RECORD).is_file()]


class RunCache:
    """Entries under `root/<kind>/<key>`, computed once and verified on every read."""

    def __init__(self, root: str | Path):
        """Create (if needed) and check the runs folder `root` is writable."""
        self.root = Path(root).expanduser()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=self.root).close()
        except OSError as exc:
            raise CacheError(
                f"runs folder {self.root} is not a writable folder ({exc}); choose another with the "
                f"runs_dir parameter (notebooks, get_config), --runs-dir (CLI) or ${RUNS_DIR_ENV}"
            ) from exc

    def path(self, kind: str, key: str) -> Path:
        """Return the folder of entry `key` of `kind`."""
        return self.root / kind / key

    @staticmethod
    def keyed(spec: Mapping) -> dict:
        """`spec` with the numerics runs compute under here (`numerics.settings`): its entry's full spec, so an
        entry computed with other threads, CPU kernels or torch is never served."""
        return {**spec, "numerics": numerics.settings()}

    def has(self, kind: str, spec: Mapping) -> bool:
        """Tell whether a complete (record written, not yet verified) entry exists for `spec`."""
        return (self.path(kind, run_key(self.keyed(spec))) / RECORD).is_file()

    def load(self, kind: str, spec: Mapping) -> Entry:
        """Return the verified entry for `spec`; raise CacheError if absent or corrupt (moved aside)."""
        path = self.path(kind, run_key(self.keyed(spec)))
        _TOUCHED.add(f"{kind}/{path.name}")
        if not path.is_dir():
            raise CacheError(f"no {kind} entry for this spec at {path}; compute it with get_or_compute")
        entry, problems = _open(path)
        if problems:
            raise CacheError(f"corrupt {kind} entry {kind}/{path.name} in {self.root} ({'; '.join(problems)}); moved "
                             f"aside to {self._move_aside(path).name}")
        return entry

    def get_or_compute(
        self, kind: str, spec: Mapping, compute: Callable[[Path], tuple[pd.DataFrame, dict]]
    ) -> Entry:
        """Return the entry for `spec`, calling compute(tmpdir) -> (results, extra record) only if missing or corrupt;
        it computes under `numerics.fixed()`, whoever calls it."""
        spec = self.keyed(spec)
        if _process_group()[1] > 1:
            return self._get_or_compute_together(kind, spec, compute)
        key = run_key(spec)
        final = self.path(kind, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        self._remove_stale(final.parent)
        _TOUCHED.add(f"{kind}/{key}")
        if final.is_dir():  # a complete entry is read without the lock: entries appear by one rename
            entry, problems = _open(final)
            if not problems:
                return entry
        # One process computes an entry at a time: another that needs it (the book trains chapters
        # side by side, and they share pre-trained rungs and SFT models) waits here, then reads it.
        with FileLock(final.parent / f".lock-{key}"):
            entry = self._verified(kind, final)
            if entry is not None:
                return entry
            tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(key), dir=final.parent))
            try:
                record = self._build(tmp, kind, key, spec, compute)
                os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return Entry(final, record)

    def _get_or_compute_together(
        self, kind: str, spec: Mapping, compute: Callable[[Path], tuple[pd.DataFrame, dict]]
    ) -> Entry:
        """`get_or_compute` under a torch.distributed process group (`accelerate` with several processes).

        Every process must run `compute`, because the training inside it is collective, but only the
        main one publishes: transformers' `save_pretrained` writes weights on the main process alone,
        so another process's temp folder can lack them and still look complete. Whether the entry
        exists is decided by the main process and broadcast, so that all processes take the same path
        (a process that returned early would leave the others waiting at the barrier forever).
        """
        import torch.distributed as dist

        rank = _process_group()[0]  # `spec` is keyed by the caller
        final = self.path(kind, run_key(spec))
        _TOUCHED.add(f"{kind}/{final.name}")
        entry = None  # the main process's, already verified: it is not hashed a second time
        if rank == 0:
            final.parent.mkdir(parents=True, exist_ok=True)
            self._remove_stale(final.parent)
            entry = self._verified(kind, final)
        exists = [entry is not None]
        dist.broadcast_object_list(exists, src=0)
        if not exists[0]:
            tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(final.name), dir=final.parent))
            try:
                if rank == 0:
                    record = self._build(tmp, kind, final.name, spec, compute)
                    os.replace(tmp, final)
                    entry = Entry(final, record)
                else:
                    with numerics.fixed():
                        compute(tmp)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            dist.barrier()
        return entry if entry is not None else self._verified_or_fail(kind, final)

    def _verified_or_fail(self, kind: str, final: Path) -> Entry:
        """The verified entry at `final`, or CacheError (a corrupt one moved aside)."""
        if not final.is_dir():
            raise CacheError(f"no {kind} entry {final.name} in {self.root}")
        entry, problems = _open(final)
        if problems:
            raise CacheError(f"corrupt {kind} entry {kind}/{final.name} ({'; '.join(problems)}); moved aside to "
                             f"{self._move_aside(final).name}")
        return entry

    def _verified(self, kind: str, final: Path) -> Entry | None:
        """The verified entry at `final`; None when there is none, or when it is corrupt (then it is moved
        aside, to be recomputed)."""
        if not final.is_dir():
            return None
        entry, problems = _open(final)
        if not problems:
            return entry
        # named within the runs folder: a warning shown in a published chapter carries no machine's paths
        logger.warning("corrupt %s entry %s/%s (%s): moved aside to %s, recomputing",
                       kind, kind, final.name, "; ".join(problems), self._move_aside(final).name)
        return None

    @staticmethod
    def _build(tmp: Path, kind: str, key: str, spec: Mapping,
               compute: Callable[[Path], tuple[pd.DataFrame, dict]]) -> dict:
        """Run compute in `tmp`, then write the results table and, last, the record (returned)."""
        start, cpu_start = time.perf_counter(), time.process_time()
        with numerics.fixed():
            results, extra = compute(tmp)
        wall_seconds = round(time.perf_counter() - start, 3)
        # CPU time of this process, all its threads, nested entries included: unlike wall time, it does
        # not grow when other processes share the cores
        cpu_seconds = round(time.process_time() - cpu_start, 3)
        logger.info("%s entry %s computed in %.1f s (%.1f CPU-s)", kind, key[:12], wall_seconds, cpu_seconds)
        clash = sorted(set(extra) & set(RESERVED))
        if clash:
            raise CacheError(f"compute returned reserved record keys {clash}; rename them")
        results.to_parquet(tmp / RESULTS)
        files = {p.relative_to(tmp).as_posix(): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        record = {
            "kind": kind,
            "key": key,
            "spec": json.loads(_canonical(dict(spec))),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "wall_seconds": wall_seconds,
            "cpu_seconds": cpu_seconds,
            "files": files,
            **extra,
        }
        (tmp / RECORD).write_text(json.dumps(record, indent=2, default=_jsonable), encoding="utf-8")
        return json.loads((tmp / RECORD).read_text(encoding="utf-8"))

    @staticmethod
    def _remove_stale(folder: Path) -> None:
        """Delete temp folders in `folder` left by processes of this machine that no longer run. A folder of
        another machine (a cluster's shared runs folder) is left alone: whether its process runs cannot be
        told from here."""
        for tmp in folder.glob(".tmp-*"):
            owner = re.fullmatch(r"\.tmp-\w+-([0-9a-f]{8})-(\d+)-\w+", tmp.name)
            if owner and (owner[1] != _HOST or _pid_alive(int(owner[2]))):
                continue
            logger.info("removing stale temp folder %s/%s", folder.name, tmp.name)
            shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _move_aside(path: Path) -> Path:
        """Rename a corrupt entry to a hidden `.corrupt-*` sibling (kept for inspection) and return it."""
        aside = path.with_name(f".corrupt-{path.name}-{time.time_ns()}")
        os.replace(path, aside)
        return aside


def _entry_dirs(root: str | Path) -> list[Path]:
    """Return the entry folders under `root` (hidden temp and corrupt folders, and hidden folders such as the
    workflow's, excluded)."""
    return sorted(p for p in Path(root).glob("*/*")
                  if p.is_dir() and not p.name.startswith(".") and not p.parent.name.startswith("."))


def list_entries(root: str | Path) -> pd.DataFrame:
    """Tabulate the entries under `root`: kind, key, created, wall and CPU seconds, n_rows, ok."""
    rows = []
    for path in _entry_dirs(root):
        entry, problems = _open(path)
        record = entry.record if entry else {}
        try:
            n_rows = pq.ParquetFile(path / RESULTS).metadata.num_rows
        except (OSError, ValueError):
            n_rows = None
        rows.append({"kind": path.parent.name, "key": path.name, "created": record.get("created"),
                     "wall_seconds": record.get("wall_seconds"), "cpu_seconds": record.get("cpu_seconds"),
                     "n_rows": n_rows, "ok": not problems})
    return pd.DataFrame(rows, columns=LIST_COLUMNS)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI: `list` prints the entries, `verify` prints problems and returns 1 if any."""
    parser = argparse.ArgumentParser(prog="python -m w2s_deception.cache", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["list", "verify"])
    parser.add_argument("--runs-dir", type=Path, default=None,
                        help=f"runs folder (default ${RUNS_DIR_ENV} or {REPO_ROOT / 'runs'})")
    args = parser.parse_args(argv)
    root = args.runs_dir or default_runs_dir()
    if not root.is_dir():
        print(f"no runs folder at {root} ({'not a folder' if root.exists() else 'missing'}): pass --runs-dir or set "
              f"{RUNS_DIR_ENV}", file=sys.stderr)
        return 2
    if args.command == "list":
        table = list_entries(root)
        print(table.to_string(index=False) if len(table) else f"no entries in {root}")
        return 0
    paths, bad = _entry_dirs(root), 0
    for path in paths:
        problems = _open(path)[1]
        bad += bool(problems)
        for problem in problems:
            print(f"{path.relative_to(root)}: {problem}")
    print(f"{bad} of {len(paths)} entries in {root} have problems")
    return int(bad > 0)


if __name__ == "__main__":
    sys.exit(main())
