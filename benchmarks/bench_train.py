"""Training throughput and peak memory of every registered trainer, on one model and one set of pairs.

    python benchmarks/bench_train.py                 # the table of the README (about 3 minutes here)
    python benchmarks/bench_train.py --list          # the registered trainers and whether they can run
    python benchmarks/bench_train.py --only project,"original (a)" --pairs 64

Every trainer (see `registry.py`) runs in a fresh process forked from a server that has only
imported the libraries, trains a fresh copy of the same initial GPT-2-architecture LM (by default
4 layers × 192, the cpu ladder's top rung `mini`, randomly initialised; `--trunk DIR` loads a
`save_pretrained` folder instead, e.g. a pre-trained rung from `runs/pretrain/<key>/model`) on the
same real pairs (`hh-harmless/train_gt`, `load_pairs` + `encode_pair`), batch size, learning rate
and seed, after a one-step warm-up on 4 pairs; the fastest of `--repeat` (2) timed runs counts.
Reported:

- tokens/s: real (non-padding) tokens of the training sequences / wall seconds of training;
- tokens/CPU-s: the same per CPU-second of that process. With one thread (the default) this is
  the wall rate of an idle machine, and it does not drop when other processes share the cores,
  which wall time does (another engineer's jobs here): the ratios use it;
- × (a): tokens/CPU-s relative to the re-implementation of the authors' step (`original_rm.py`);
- peak RSS Δ: `getrusage` maxrss after training minus maxrss before the model was built, in
  that fresh process (tracemalloc does not see torch's allocations);
- max|Δ|: for a variant that sees the same batches from the same initial weights as another row,
  the largest per-step difference of their training losses, and the largest difference of the
  trained models' margins on the first 32 pairs divided by the largest margin (agreement).

This is a measurement script that prints a table, not a test: timings depend on the machine and
on its load. It never writes under `runs/`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import registry  # noqa: E402

PRELOAD = ["torch", "transformers", "transformers.models.gpt2.modeling_gpt2", "accelerate", "datasets",
           "w2s_deception.train", "w2s_deception.data", "w2s_deception.corpus", "registry", "rm_trainers",
           "original_rm"]
WARMUP_PAIRS = 4
BASELINE = "original (a)"
GOAL = 5.0


def maxrss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def quiet(transformers) -> None:
    """No progress bars or advisory warnings from the libraries in the table's output."""
    import warnings

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


def prepare(args: argparse.Namespace, workdir: str) -> None:
    """Build the workload once: pairs, token ids, tokenizer and initial weights under `workdir`."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from w2s_deception.corpus import train_tokenizer
    from w2s_deception.data import encode_pair, load_pairs
    from w2s_deception.ladder import BLOCK

    torch.set_num_threads(args.threads)
    quiet(transformers)
    pairs = load_pairs("hh-harmless/train_gt", data_dir=args.data_dir, limit=args.pairs)
    if args.trunk:
        tok = AutoTokenizer.from_pretrained(args.trunk)
        lm = AutoModelForCausalLM.from_pretrained(args.trunk)
    else:
        # a BPE tokenizer like the ladder's (4096 ids, same special tokens), trained on train_gt text
        corpus = load_pairs("hh-harmless/train_gt", data_dir=args.data_dir, limit=2000)
        tok = train_tokenizer([p + r for p, c, rj in zip(corpus["prompt"], corpus["chosen"], corpus["rejected"])
                               for r in (c, rj)])
        torch.manual_seed(0)
        lm = GPT2LMHeadModel(GPT2Config(  # as ladder.pretrain_entry builds a scratch rung
            vocab_size=len(tok), n_positions=BLOCK, n_embd=args.hidden, n_layer=args.layers, n_head=args.heads,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu_pytorch_tanh",
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
    if lm.config.max_position_embeddings < args.max_length:
        raise SystemExit(f"--max-length {args.max_length} exceeds the model's "
                         f"{lm.config.max_position_embeddings} positions")
    lm.save_pretrained(Path(workdir) / "model")
    tok.save_pretrained(Path(workdir) / "model")
    enc = [[encode_pair(tok, p, r, args.max_length) for r in (c, rj)]
           for p, c, rj in zip(pairs["prompt"], pairs["chosen"], pairs["rejected"])]
    registry.Workload(
        workdir=Path(workdir), prompts=list(pairs["prompt"]), chosen=list(pairs["chosen"]),
        rejected=list(pairs["rejected"]),
        chosen_ids=[e[0][0] for e in enc], rejected_ids=[e[1][0] for e in enc],
        chosen_start=[e[0][1] for e in enc], rejected_start=[e[1][1] for e in enc], pad_id=tok.pad_token_id,
        max_length=args.max_length, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
    ).save()
    info = {"parameters": sum(p.numel() for p in lm.parameters()), "layers": lm.config.num_hidden_layers,
            "hidden": lm.config.hidden_size, "vocab": len(tok)}
    (Path(workdir) / "model-info.json").write_text(json.dumps(info))


def worker(name: str, workdir: str, threads: int, repeat: int) -> None:
    """Run one trainer (in its own process) and write its measurements to `result-<n>.json`."""
    trainer = registry.load_all()[name]
    os.environ.update(trainer.env)  # before the trainer builds its Accelerator
    import torch
    import transformers

    torch.set_num_threads(threads)
    quiet(transformers)
    w = registry.Workload.load(Path(workdir))
    if trainer.max_pairs:
        w = w.subset(trainer.max_pairs)
    before = maxrss_mib()
    if trainer.warmup:
        trainer.run(replace(w.subset(WARMUP_PAIRS), batch_size=WARMUP_PAIRS))
    result = min((trainer.run(w) for _ in range(repeat)), key=lambda r: r.timer.cpu_seconds)  # least disturbed
    out = {"tokens": result.tokens, "seconds": result.timer.seconds, "cpu_seconds": result.timer.cpu_seconds,
           "losses": result.losses, "margins": result.margins, "extra": result.extra, "pairs": len(w),
           "peak_delta_mib": maxrss_mib() - before}
    (Path(workdir) / f"result-{_slug(name)}.json").write_text(json.dumps(out))


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)


def run_in_fresh_process(ctx, target, args: tuple, timeout: float) -> str | None:
    """Run `target(*args)` in a new process; returns None, or why it failed."""
    proc = ctx.Process(target=target, args=args)
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.terminate()
        proc.join(10)
        return f"timed out after {timeout:.0f} s"
    return None if proc.exitcode == 0 else f"failed (exit code {proc.exitcode}; traceback above)"


def ratio(r: dict, base: dict) -> float:
    """Throughput relative to the baseline, in tokens per CPU-second (see the module docstring)."""
    return (r["tokens"] / r["cpu_seconds"]) / (base["tokens"] / base["cpu_seconds"])


def wall_ratio(r: dict, base: dict) -> float:
    return (r["tokens"] / r["seconds"]) / (base["tokens"] / base["seconds"])


def agreement(r: dict, ref: dict, ref_name: str) -> str:
    """Largest per-step loss difference, and largest trained-margin difference relative to the margins' scale."""
    n = min(len(ref["losses"]), len(r["losses"]))
    text = f"loss {max(abs(a - b) for a, b in zip(ref['losses'][:n], r['losses'][:n])):.0e}"
    if r.get("margins") and ref.get("margins"):
        scale = max(abs(m) for m in ref["margins"])
        text += f", margin {max(abs(a - b) for a, b in zip(ref['margins'], r['margins'])) / scale:.0e}"
    return f"{text} (vs {ref_name})"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=64, help="training pairs (one epoch)")
    parser.add_argument("--max-length", type=int, default=96, help="tokens per sequence (the cpu profile's 96)")
    parser.add_argument("--batch-size", type=int, default=32, help="pairs per optimiser step (the paper's 32)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=192)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--trunk", help="a save_pretrained folder (model + tokenizer) instead of a random 4×192 LM")
    parser.add_argument("--data-dir", help="data folder (default: $W2S_DATA_DIR or ../shared/data)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per trainer (default 1: steady "
                        "numbers on a shared machine)")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per trainer, the fastest is reported "
                        "(each from the initial weights; guards against bursts of load from other processes)")
    parser.add_argument("--only", help="comma-separated trainer names")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per trainer")
    parser.add_argument("--list", action="store_true", help="list the trainers and exit")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    if not args.list:
        from multiprocessing import forkserver
        forkserver.ensure_running()  # the server imports PRELOAD while this process loads the registry
    trainers = registry.load_all()
    if args.list:
        for t in trainers.values():
            print(f"{t.name:32} {t.group:20} {t.unavailable() or 'available'}  — {t.what}")
        return 0
    chosen = list(trainers) if not args.only else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in chosen if n not in trainers]
    if unknown:
        parser.error(f"unknown trainers {unknown}; registered: {list(trainers)}")

    print("$", shlex.join(["python", "benchmarks/bench_train.py", *(argv if argv is not None else sys.argv[1:])]))
    with tempfile.TemporaryDirectory(prefix="w2s-bench-") as workdir:
        failed = run_in_fresh_process(ctx, prepare, (args, workdir), args.timeout)
        if failed:
            print(f"preparing the workload {failed}", file=sys.stderr)
            return 1
        info = json.loads((Path(workdir) / "model-info.json").read_text())
        results, notes = {}, {}
        for name in chosen:
            reason = trainers[name].unavailable()
            if reason is None:
                reason = run_in_fresh_process(ctx, worker, (name, workdir, args.threads, args.repeat), args.timeout)
            if reason is None:
                results[name] = json.loads((Path(workdir) / f"result-{_slug(name)}.json").read_text())
            else:
                notes[name] = reason
        elapsed = time.perf_counter() - started

    import torch

    print(f"model: GPT-2 architecture, {info['layers']} layers × {info['hidden']}, vocab {info['vocab']}, "
          f"{info['parameters'] / 1e6:.2f}M parameters ({'--trunk ' + args.trunk if args.trunk else 'random init'}); "
          f"pairs: hh-harmless/train_gt, first {args.pairs}, max_length {args.max_length}; batch {args.batch_size} "
          f"pairs, lr {args.lr:g}, 1 epoch, best of {args.repeat}; torch {torch.__version__}, "
          f"{args.threads} thread(s), "
          f"{platform.processor() or platform.machine()} × {os.cpu_count()} cores")
    base = results.get(BASELINE)
    rows = []
    for name in chosen:
        t = trainers[name]
        if name not in results:
            rows.append([name, "-", "-", "-", "-", "-", "-", "-", notes[name]])
            continue
        r = results[name]
        ref = results.get(t.same_order_as) if t.same_order_as else None
        rows.append([name, r["pairs"], r["tokens"], f"{r['seconds']:.1f}", f"{r['tokens'] / r['seconds']:,.0f}",
                     f"{r['tokens'] / r['cpu_seconds']:,.0f}", f"{ratio(r, base):.2f}×" if base else "-",
                     f"{r['peak_delta_mib']:.0f}", agreement(r, ref, t.same_order_as) if ref else ""])
    print(table(rows, ["trainer", "pairs", "tokens", "wall s", "tokens/s", "tokens/CPU-s", "× (a)", "peak RSS Δ MiB",
                       "max|Δ| loss, margin/scale (same batches)"]))
    for name in chosen:
        print(f"  {name}: {trainers[name].what}")
    for name in chosen:
        extra = results.get(name, {}).get("extra")
        if extra:
            print(f"{name}: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                          for k, v in extra.items()))
    if base and "project" in results:
        rm_rows = [n for n in results if trainers[n].group == registry.REWARD and n != BASELINE]
        best = max(rm_rows, key=lambda n: ratio(results[n], base))
        x = ratio(results["project"], base)
        print(f"project / original (a): {x:.2f}× tokens per CPU-second, {wall_ratio(results['project'], base):.2f}× "
              f"tokens/s (goal ≥ {GOAL:g}×: {'met' if x >= GOAL else 'not met'}); fastest reward-model row: {best}, "
              f"{ratio(results[best], base):.2f}×")
    print(f"(whole run {elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
