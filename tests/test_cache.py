"""Tests for w2s_deception.cache: keys, atomic entries, corruption handling and the CLI."""

from __future__ import annotations

import importlib
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from w2s_deception import numerics
from w2s_deception.cache import (
    KEY_EXEMPT,
    CacheError,
    RunCache,
    _code_version,
    code_text,
    code_version,
    imported_modules,
    list_entries,
    main,
    run_key,
    verify,
)

SPEC = {"model": "gpt2-s", "seed": 0, "lr": 1e-5, "data": Path("/d/hh"), "layers": (1, 2)}


class Counter:
    """A compute function that counts its calls and writes an extra file."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, tmpdir: Path) -> tuple[pd.DataFrame, dict]:
        self.calls += 1
        (tmpdir / "weights.bin").write_bytes(b"\x00\x01" * 100)
        return pd.DataFrame({"pair_id": [0, 1, 2], "confidence": [0.2, 0.5, 0.9]}), {"accuracy": np.float32(2 / 3)}


def entries_and_temp_folders(folder: Path) -> list[str]:
    """Names in a kind's folder other than the entries' (empty) lock files."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".lock-"))


def test_run_key_deterministic_and_order_free() -> None:
    key = run_key(SPEC)
    assert len(key) == 16
    assert key == run_key(dict(reversed(list(SPEC.items()))))
    assert key == run_key({**SPEC, "data": "/d/hh", "layers": [1, 2]})
    assert run_key({"seed": np.int64(3)}) == run_key({"seed": 3})
    with pytest.raises(TypeError, match="run spec"):
        run_key({"model": object()})


@pytest.mark.parametrize(
    "field, value", [("model", "gpt2-m"), ("seed", 1), ("lr", 2e-5), ("data", Path("/e")), ("layers", (1, 3))]
)
def test_run_key_sensitive_to_every_field(field: str, value: object) -> None:
    assert run_key({**SPEC, field: value}) != run_key(SPEC)


def test_run_key_sensitive_to_added_field() -> None:
    assert run_key({**SPEC, "extra": None}) != run_key(SPEC)


def test_code_version_follows_what_a_module_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "fakepkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "train.py").write_text("from .util import step\nLR = 1\n\ndef f():\n    from fakepkg import loss\n")
    (package / "util.py").write_text("step = 1\n")
    (package / "loss.py").write_text("NAME = 'ce'\n")
    (package / "plots.py").write_text("from .train import LR\nCOLOR = 'red'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    assert imported_modules("train", "fakepkg") == {"train", "util", "loss"}  # plots imports train, not the reverse
    before = code_version("train", package="fakepkg")
    assert before == code_version("fakepkg.train", package="fakepkg") and len(before) == 12

    def changed(name: str, text: str) -> str:
        (package / f"{name}.py").write_text(text)
        _code_version.cache_clear()  # a new process
        imported_modules.cache_clear()
        return code_version("train", package="fakepkg")

    assert changed("plots", "COLOR = 'blue'\n") == before  # not imported: nothing to rehash
    assert changed("train", '"""Training."""\nfrom .util import step  # one step\nLR = 1\n\ndef f():\n'
                            '    from fakepkg import loss\n') == before  # the same code, re-documented
    assert changed("util", "step = 2\n") != before  # imported directly
    (package / "util.py").write_text("step = 1\n")
    assert changed("loss", "NAME = 'mse'\n") != before  # imported inside a function
    (package / "loss.py").write_text("NAME = 'ce'\n")
    assert changed("util", "step = 1\n") == before
    (package / "util.py").write_text("step = 3\n")
    assert code_version("train", package="fakepkg") == before  # this process keys the code it imported
    with pytest.raises(ModuleNotFoundError):
        code_version("nope", package="fakepkg")


def test_code_keys_of_this_package_follow_its_imports() -> None:
    assert "data" in imported_modules("ladder") and "corpus" in imported_modules("ladder")  # tokenizer, rungs
    assert "charts" not in imported_modules("preference") and "analysis" not in imported_modules("experiments")
    assert set(KEY_EXEMPT) == {"config", "cache"}


def test_code_text_ignores_comments_docstrings_and_layout_but_not_code() -> None:
    base = code_text('"""Module."""\ndef f(x):\n    """Doc."""\n    return x + 1\n')
    assert code_text('"""Other words."""\n# a comment\ndef f( x ):  # here too\n'
                     '    """Changed."""\n\n    return x+1\n') == base
    assert code_text('def f(x):\n    return x + 1\n') == base
    assert code_text('def f(x):\n    """Doc."""\n') == code_text('def f(x):\n    pass\n')  # a body of one docstring
    assert code_text('def f(x):\n    return x + 2\n') != base
    assert code_text('def f(x):\n    "a string that is code"\n    return x + 1\n') == base  # first string: docstring
    assert code_text('def f(x):\n    y = "text"\n    return x + 1\n') != base


def test_get_or_compute_computes_once(tmp_path: Path) -> None:
    cache, compute = RunCache(tmp_path / "runs"), Counter()
    first = cache.get_or_compute("rm", SPEC, compute)
    second = cache.get_or_compute("rm", dict(reversed(list(SPEC.items()))), compute)
    assert compute.calls == 1
    assert first.path == second.path == cache.path("rm", run_key(cache.keyed(SPEC)))
    assert second.results["confidence"].tolist() == [0.2, 0.5, 0.9]
    assert second.record["accuracy"] == pytest.approx(2 / 3)
    assert second.record["spec"]["data"] == "/d/hh"
    assert second.record["spec"]["numerics"] == numerics.settings()
    assert set(second.record["files"]) == {"results.parquet", "weights.bin"}
    assert second.file("weights.bin").read_bytes() == b"\x00\x01" * 100
    assert cache.has("rm", SPEC) and not cache.has("rm", {**SPEC, "seed": 9})
    assert cache.load("rm", SPEC).record == first.record
    assert verify(first) == []
    with pytest.raises(CacheError):
        first.file("missing.bin")


def test_record_keeps_cpu_seconds_apart_from_wall_seconds(tmp_path: Path) -> None:
    """A compute that sleeps costs wall time but no CPU; one that spins costs both."""
    cache = RunCache(tmp_path)

    def waiting(tmpdir: Path) -> tuple[pd.DataFrame, dict]:
        time.sleep(0.3)
        return pd.DataFrame({"a": [1]}), {}

    def spinning(tmpdir: Path) -> tuple[pd.DataFrame, dict]:
        end = time.process_time() + 0.3
        while time.process_time() < end:
            pass
        return pd.DataFrame({"a": [1]}), {}

    slept = cache.get_or_compute("rm", {"x": "sleep"}, waiting).record
    spun = cache.get_or_compute("rm", {"x": "spin"}, spinning).record
    assert slept["wall_seconds"] >= 0.3 and slept["cpu_seconds"] < 0.15
    assert spun["cpu_seconds"] >= 0.3


def test_crash_in_compute_leaves_nothing(tmp_path: Path) -> None:
    cache = RunCache(tmp_path)

    def crash(tmpdir: Path) -> tuple[pd.DataFrame, dict]:
        (tmpdir / "partial.bin").write_bytes(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        cache.get_or_compute("rm", SPEC, crash)
    assert entries_and_temp_folders(tmp_path / "rm") == []
    assert not cache.has("rm", SPEC)
    with pytest.raises(CacheError, match="no rm entry"):
        cache.load("rm", SPEC)


def test_reserved_record_key_rejected(tmp_path: Path) -> None:
    cache = RunCache(tmp_path)
    with pytest.raises(CacheError, match="reserved"):
        cache.get_or_compute("rm", SPEC, lambda tmpdir: (pd.DataFrame({"a": [1]}), {"files": {}}))
    with pytest.raises(CacheError, match="reserved"):
        cache.get_or_compute("rm", SPEC, lambda tmpdir: (pd.DataFrame({"a": [1]}), {"cpu_seconds": 1.0}))
    assert entries_and_temp_folders(tmp_path / "rm") == []


def test_truncated_results_detected_and_recomputed(tmp_path: Path, caplog) -> None:
    """A tampered entry is moved aside and recomputed; the warning (which a chapter would show) names the entry
    within the runs folder, not the machine's absolute path."""
    cache, compute = RunCache(tmp_path), Counter()
    entry = cache.get_or_compute("rm", SPEC, compute)
    parquet = entry.path / "results.parquet"
    parquet.write_bytes(parquet.read_bytes()[:50])
    assert verify(entry) == ["hash mismatch results.parquet"]
    with caplog.at_level("WARNING", logger="w2s_deception.cache"):
        again = cache.get_or_compute("rm", SPEC, compute)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"rm/{entry.path.name}" in warning and str(tmp_path) not in warning
    assert compute.calls == 2
    assert verify(again) == [] and len(again.results) == 3
    assert len(list((tmp_path / "rm").glob(".corrupt-*"))) == 1


def test_load_refuses_corrupt_entry(tmp_path: Path) -> None:
    cache = RunCache(tmp_path)
    entry = cache.get_or_compute("rm", SPEC, Counter())
    (entry.path / "weights.bin").unlink()
    with pytest.raises(CacheError, match="missing file weights.bin"):
        cache.load("rm", SPEC)
    assert not entry.path.exists()


def test_stale_temp_dir_ignored_and_removed(tmp_path: Path) -> None:
    """A temp folder of a dead process of this machine is removed; one of a live process, or of another
    machine sharing the runs folder (a cluster), whose process cannot be checked from here, is kept."""
    from w2s_deception.cache import _HOST

    cache, compute = RunCache(tmp_path), Counter()
    key = run_key(cache.keyed(SPEC))
    stale = tmp_path / "rm" / f".tmp-{key}-{_HOST}-999999999-abc123"  # no such pid here
    stale.mkdir(parents=True)
    (stale / "results.parquet").write_bytes(b"junk")
    live = tmp_path / "rm" / f".tmp-{key}-{_HOST}-{os.getpid()}-xyz"  # a run in progress in this process
    live.mkdir()
    other_host = "0" * 8 if _HOST != "0" * 8 else "1" * 8
    elsewhere = tmp_path / "rm" / f".tmp-{key}-{other_host}-999999999-def456"  # another node's run
    elsewhere.mkdir()
    assert list_entries(tmp_path).empty
    entry = cache.get_or_compute("rm", SPEC, compute)
    assert compute.calls == 1 and verify(entry) == []
    assert not stale.exists() and live.exists() and elsewhere.exists()


def _slow_compute_in(root: Path) -> str:
    """Compute SPEC's entry in `root` with a compute that takes a second and logs its call; the record's time."""
    def compute(tmpdir: Path) -> tuple[pd.DataFrame, dict]:
        with open(root / "calls.log", "a") as log:
            log.write(f"{os.getpid()}\n")
        time.sleep(1.0)
        return Counter()(tmpdir)

    return RunCache(root).get_or_compute("rm", SPEC, compute).record["created"]


def test_processes_sharing_a_runs_folder_compute_an_entry_once(tmp_path: Path) -> None:
    """Two processes that need the same missing entry at once: one computes it, the other waits and reads it
    (the book trains chapters side by side, and they share pre-trained rungs and SFT models)."""
    with multiprocessing.get_context("fork").Pool(2) as pool:
        created = pool.map(_slow_compute_in, [tmp_path, tmp_path])
    assert len((tmp_path / "calls.log").read_text().split()) == 1
    assert created[0] == created[1]
    assert entries_and_temp_folders(tmp_path / "rm") == [run_key(RunCache.keyed(SPEC))]


def test_reading_a_complete_entry_takes_no_lock(tmp_path: Path) -> None:
    """Entries appear by one rename, so a warm read needs no lock and writes nothing into the runs folder."""
    cache, compute = RunCache(tmp_path), Counter()
    cache.get_or_compute("rm", SPEC, compute)
    (lock,) = (tmp_path / "rm").glob(".lock-*")
    lock.unlink()
    cache.get_or_compute("rm", SPEC, compute)
    assert compute.calls == 1 and list((tmp_path / "rm").glob(".lock-*")) == []


def test_unwritable_root(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for root in (blocker, blocker / "runs"):
        with pytest.raises(CacheError, match="W2S_RUNS_DIR") as error:
            RunCache(root)
        assert str(root) in str(error.value)


def test_list_entries(tmp_path: Path) -> None:
    cache = RunCache(tmp_path)
    cache.get_or_compute("rm", SPEC, Counter())
    cache.get_or_compute("simpo", {**SPEC, "seed": 1}, Counter())
    table = list_entries(tmp_path)
    assert table.columns.tolist() == ["kind", "key", "created", "wall_seconds", "cpu_seconds", "n_rows", "ok"]
    assert (table["cpu_seconds"] >= 0).all()
    assert table["kind"].tolist() == ["rm", "simpo"]
    assert table["n_rows"].tolist() == [3, 3] and table["ok"].all()


def test_cli_list_and_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--runs-dir", str(tmp_path)]) == 0
    assert "no entries" in capsys.readouterr().out
    entry = RunCache(tmp_path).get_or_compute("rm", SPEC, Counter())
    assert main(["list", "--runs-dir", str(tmp_path)]) == 0
    assert entry.path.name in capsys.readouterr().out
    assert main(["verify", "--runs-dir", str(tmp_path)]) == 0
    (tmp_path / ".workflow" / "smoke" / "simpo").mkdir(parents=True)  # what a build keeps beside the entries
    (tmp_path / ".workflow" / "smoke" / "simpo" / "matrix.done").write_text('{"entries": []}')
    assert main(["verify", "--runs-dir", str(tmp_path)]) == 0
    assert "0 of 1 entries" in capsys.readouterr().out
    (entry.path / "record.json").write_text("{truncated")
    assert main(["verify", "--runs-dir", str(tmp_path)]) == 1
    assert "unreadable record.json" in capsys.readouterr().out


def test_cli_module_entry_point(tmp_path: Path) -> None:
    RunCache(tmp_path).get_or_compute("rm", SPEC, Counter())
    (tmp_path / "rm" / run_key(RunCache.keyed(SPEC)) / "weights.bin").write_bytes(b"tampered")
    env = {**os.environ, "W2S_RUNS_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "w2s_deception.cache", "verify"],
                          capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 1
    assert "hash mismatch weights.bin" in done.stdout


def test_each_computed_entry_logs_one_line_and_a_cached_one_none(tmp_path: Path, caplog) -> None:
    # a build log without progress bars (not a terminal) shows one line per run, so progress can be read
    cache, compute = RunCache(tmp_path), Counter()
    with caplog.at_level("INFO", logger="w2s_deception.cache"):
        cache.get_or_compute("rm", SPEC, compute)
        cache.get_or_compute("rm", SPEC, compute)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith(f"rm entry {run_key(RunCache.keyed(SPEC))[:12]} computed in ")


def test_cli_on_a_missing_or_non_folder_runs_dir_fails(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["verify", "--runs-dir", str(tmp_path / "nowhere")]) == 2
    assert "no runs folder" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["list", "--runs-dir", str(tmp_path / "file")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["verify", "--runs-dir", str(tmp_path)]) == 0  # an empty folder is a valid, empty cache
