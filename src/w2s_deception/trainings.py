"""Each chapter's trainings, declared once: the build's workflow (`workflow/Snakefile`) runs each as a job
(`python -m w2s_deception.trainings --profile P NAME`) before the notebooks, which then make the same
calls and read the warm run cache."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from .cache import CacheError, touched
from .config import ARITHMETIC_CHAPTER, Config, ConfigError, get_config, rm_config
from .data import DataError

# The α strengths of the controlled task's α section (the defaults of its notebook's `alphas` parameter)
ARITHMETIC_ALPHAS = (0.25, 0.5, 1.0)


@dataclass(frozen=True)
class Training:
    """One unit of a build's work: a name (`<chapter>/<what>`), its resources, what it needs first."""

    name: str
    run: Callable[[], object]
    threads: int = 1
    mem_mb: int = 3000
    needs: tuple[str, ...] = ()
    gpus: int = 0  # on a cluster (the `paper` profile): more than 1 runs under `accelerate launch` (FSDP)
    runtime_min: int = 240  # the cluster job's time limit

    @property
    def chapter(self) -> str:
        return self.name.split("/", 1)[0]


def _on_gpus(profile: str, units: list[Training]) -> list[Training]:
    """The `paper` profile's resources: the HH chapters' matrices shard their 7-70B rungs over one node's 8
    GPUs (`configs/accelerate/fsdp.yaml`); feature splits and the controlled task's small scratch rungs
    need one GPU; elsewhere everything runs on CPUs."""
    if profile != "paper":
        return units
    small = lambda t: t.chapter == "controlled_task" or "/features-" in t.name or "/pretrain-" in t.name  # noqa: E731
    return [replace(t, gpus=1, threads=8, mem_mb=64_000, runtime_min=4 * 60) if small(t)
            else replace(t, gpus=8, threads=8, mem_mb=256_000, runtime_min=24 * 60) for t in units]


def arithmetic_config(profile: str, **given) -> Config:
    """The controlled task's config: the profile's, with `config.ARITHMETIC_CHAPTER`, then `given` (None ignored)."""
    return get_config(profile, **{**ARITHMETIC_CHAPTER[profile], **{k: v for k, v in given.items() if v is not None}})


def arithmetic_lora(cfg: Config) -> Config:
    """The controlled task's LoRA students (App. H), taught by the bottom rung only."""
    return replace(cfg, po_finetune="lora", weak_rungs=(cfg.by_rank(cfg.rungs)[0],))


def _pretrainings(cfg: Config, chapter: str) -> list[Training]:
    """The scratch rungs a chapter's config pre-trains, one job each, so that the chapter's jobs that share
    them wait in the workflow rather than on the run cache's locks (which would hold a core idle)."""
    from .experiments import open_cache
    from .ladder import pretrain_entry

    return [Training(f"{chapter}/pretrain-{r}", lambda r=r: pretrain_entry(cfg, cfg.rung(r), open_cache(cfg)))
            for r in cfg.rungs if cfg.rung(r).source == "scratch"]


def _needs(units: list[Training]) -> tuple[str, ...]:
    return tuple(t.name for t in units)


def _rm_trainings(profile: str) -> list[Training]:
    from .experiments import HARMLESS, open_cache, run_rm_matrix
    from .features import feature_entry

    cfg = rm_config(profile)
    out = _pretrainings(cfg, "reward_modeling")
    if cfg.finetune == "head":  # frozen real models: their features, one split per job, computed first
        for rung in (r for r in cfg.rungs if cfg.rung(r).source != "scratch"):
            for split in ("helpful", *HARMLESS):
                out.append(Training(f"reward_modeling/features-{rung}-{split}", mem_mb=4000,
                                    run=lambda r=rung, s=split: feature_entry(cfg, r, s, open_cache(cfg))))
    return out + [Training("reward_modeling/matrix", lambda: run_rm_matrix(cfg, open_cache(cfg)), needs=_needs(out))]


def _po_trainings(profile: str, method: str) -> list[Training]:
    from .experiments import open_cache
    from .preference import po_config, run_po_matrix

    cfg = po_config(profile)
    needs = tuple(f"reward_modeling/pretrain-{r}" for r in cfg.rungs if cfg.rung(r).source == "scratch"
                  and r in get_config(profile).rungs)  # pre-trained once for the reward models' ladder
    return [Training(f"{method}/matrix", lambda: run_po_matrix(cfg, open_cache(cfg), method), needs=needs)]


def _mitigation_trainings(profile: str) -> list[Training]:
    from .experiments import open_cache
    from .mitigations import bootstrap_runs, filter_runs
    from .preference import po_config

    cfg = po_config(profile)
    return [Training("mitigations/filters", lambda: filter_runs(cfg, open_cache(cfg)), needs=("simpo/matrix",)),
            Training("mitigations/bootstrap", lambda: bootstrap_runs(cfg, open_cache(cfg)), needs=("simpo/matrix",))]


def _arithmetic_trainings(profile: str) -> list[Training]:
    from .experiments import open_cache
    from .mitigations import bootstrap_runs, filter_runs
    from .preference import run_po_matrix

    cfg = arithmetic_config(profile)
    lora = arithmetic_lora(cfg)
    rungs = _pretrainings(cfg, "controlled_task")
    out = rungs + [
        Training("controlled_task/simpo", lambda: run_po_matrix(cfg, open_cache(cfg), "simpo"), needs=_needs(rungs)),
        Training("controlled_task/dpo", lambda: run_po_matrix(cfg, open_cache(cfg), "dpo"), needs=_needs(rungs)),
        Training("controlled_task/lora", lambda: run_po_matrix(lora, open_cache(lora), "simpo"), needs=_needs(rungs))]
    for a in ARITHMETIC_ALPHAS:
        if a != cfg.alpha:
            alpha = replace(cfg, alpha=a)
            out.append(Training(f"controlled_task/alpha-{a}", needs=("controlled_task/simpo",),
                                run=lambda c=alpha: run_po_matrix(c, open_cache(c), "simpo",
                                                                  ("no_conflict", "explicit"))))
    out += [Training("controlled_task/filters", lambda: filter_runs(cfg, open_cache(cfg)),
                     needs=("controlled_task/simpo",)),
            Training("controlled_task/bootstrap", lambda: bootstrap_runs(cfg, open_cache(cfg)),
                     needs=("controlled_task/simpo",))]
    return out


_DECLARED = {"reward_modeling": _rm_trainings, "simpo": lambda p: _po_trainings(p, "simpo"),
             "dpo": lambda p: _po_trainings(p, "dpo"), "mitigations": _mitigation_trainings,
             "controlled_task": _arithmetic_trainings}
# The trainings a notebook reads beyond its own (LLaMA, α and honesty train their own students in the
# notebook, from SimPO's pre-trained rungs and teachers; thresholds and spontaneous re-read SimPO's runs
# on HH and on sums)
READS = {"llama": ("simpo",), "alpha": ("simpo",), "honesty": ("simpo",),
         "thresholds": ("reward_modeling", "simpo", "controlled_task"),
         "spontaneous": ("reward_modeling", "simpo", "controlled_task")}


def chapter_trainings(chapters: list[str] | tuple[str, ...], profile: str) -> list[Training]:
    """The trainings of `chapters`, of the chapters they read, and every training those need (a SimPO matrix
    needs the reward-modeling chapter's pre-trained rungs), in declaration order."""
    every = {t.name: t for make in _DECLARED.values() for t in make(profile)}
    wanted = set(chapters) | {c for ch in chapters for c in READS.get(ch, ())}
    chosen = {name for name, t in every.items() if t.chapter in wanted}
    todo = list(chosen)
    while todo:
        for need in every[todo.pop()].needs:
            if need not in chosen:
                chosen.add(need)
                todo.append(need)
    return _on_gpus(profile, [t for name, t in every.items() if name in chosen])


def notebook_needs(chapter: str, trainings: list[Training]) -> list[str]:
    """Names of the trainings a chapter's notebook reads (its own and `READS`)."""
    reads = {chapter, *READS.get(chapter, ())}
    return [t.name for t in trainings if t.chapter in reads]


def declared(profile: str, chapters: Sequence[str] | None = None) -> dict[str, Training]:
    """Every declared training of `chapters` (default: all chapters), by name."""
    return {t.name: t for t in chapter_trainings(list(chapters or _DECLARED), profile)}


def watch_parent(pid: int, every: float = 1.0) -> None:
    """Exit this process (status 143) within `every` seconds of process `pid` ending: a build's jobs do not
    outlive a build killed with SIGKILL, which gives it no chance to stop them."""

    def watch() -> None:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(143)
            except PermissionError:
                pass
            time.sleep(every)

    threading.Thread(target=watch, daemon=True, name="watch-parent").start()


def quiet_worker(threads: int) -> None:
    """A job's process: `threads` torch threads, no progress bars (a build log gets one line per computed
    run, `cache.RunCache`), no repeated transformers warnings."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(threads)
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def main(argv: Sequence[str] | None = None) -> int:
    """Compute declared trainings (by name, or every training of a chapter) into the run cache."""
    parser = argparse.ArgumentParser(prog="python -m w2s_deception.trainings", description=main.__doc__)
    parser.add_argument("--profile", default=os.environ.get("W2S_PROFILE", "cpu"), help="cpu, smoke or paper")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the training's)")
    parser.add_argument("--list", action="store_true", help="print the declared trainings and exit")
    parser.add_argument("--record", type=Path, help="write the run-cache entries read or computed here (the "
                                                    "workflow's flag of the job)")
    parser.add_argument("names", nargs="*", help="trainings (e.g. simpo/matrix) or chapters (e.g. simpo)")
    args = parser.parse_args(argv)
    units = declared(args.profile)
    if args.list:
        for t in units.values():
            print(f"{t.name}\tthreads={t.threads}\tmem_mb={t.mem_mb}\tneeds={','.join(t.needs) or '-'}")
        return 0
    chosen = [t for n in args.names
              for t in ([units[n]] if n in units else [u for u in units.values() if u.chapter == n])]
    unknown = [n for n in args.names if n not in units and not any(u.chapter == n for u in units.values())]
    if unknown or not args.names:
        parser.error(f"unknown training or chapter: {', '.join(unknown)} (see --list)" if unknown
                     else "name a training")
    if os.environ.get("W2S_BUILD_PID"):
        watch_parent(int(os.environ["W2S_BUILD_PID"]))
    quiet_worker(args.threads or max(t.threads for t in chosen))
    with runs_logged(f"[{' '.join(args.names)}] "):
        for t in chosen:
            start = time.perf_counter()
            try:
                t.run()
            except (DataError, ConfigError, CacheError) as err:  # a problem to fix, said once, no traceback
                print(f"FAILED {t.name}: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
                return 1
            print(f"trained {t.name} [{time.perf_counter() - start:.1f} s]", flush=True)
    if args.record:
        from .provenance import write_flag

        write_flag(args.record, touched())
    return 0


@contextmanager
def runs_logged(prefix: str = "") -> Iterator[None]:
    """While open, the package's INFO lines (one per computed cache entry, `cache.RunCache`) go to stderr
    with the time and `prefix`: a build log has no progress bars, and this shows how far it is."""
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


if __name__ == "__main__":
    sys.exit(main())
