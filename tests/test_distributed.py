"""`train.fit` under several processes, and the FSDP config of the `paper` profile.

Two CPU processes (gloo) run the same training code under `accelerate launch --multi_gpu
--num_processes 2` on a free port. On a machine without CUDA that launcher (torchrun) starts both
processes, and the trainer's `Accelerator(cpu=True)` joins them over gloo. `accelerate launch --cpu
--num_processes 2` would not do: without `--mpirun_hostfile` accelerate has no multi-CPU launcher
and runs one process, so the comparison below would be a run against itself; the first test checks
that two processes really took part.

Six small scenarios, each trained on both processes and, for reference, in this process with the
same global batch (2 × the per-process batch):
- `features`: a reward head on random features, soft labels, 2 epochs (64 pairs, 8 + 8 per step);
- `tokens`: a 2-layer GPT-2 trunk on token pairs of random lengths (right-padded per process), 2 epochs;
- `uneven`: 60 pairs, not a multiple of the global batch of 16 (the last one, 12, is split 6 + 6);
- `one_left`: 17 pairs, so the last global batch holds one pair and one process none (it takes part
  in the gradient all-reduce with a pair at weight 0);
- `micro`: `tokens` run as length-sorted micro-batches of 2 pairs (gradients accumulated without
  synchronising, then all-reduced once per step), against one process cutting the global batch
  of 8 into other micro-batches;
- `policy`: a 2-layer GPT-2 policy trained with the explicit SimPO loss in micro-batches of 2, the
  way SFT, SimPO and DPO train (`preference.ResponseScorer`: the LM head on response positions
  runs inside the wrapped module's forward); compared on the pairs' summed response log-probs.

Tolerance of the one-process comparison: DDP averages the two processes' mean gradients
(g0 + g1) / 2, one process takes the mean over the same 16 pairs, so the two gradients differ only
in float32 rounding of the summation order (~1e-7 relative), and for `tokens` also in the padded
widths (each process pads to its own longest sequence). Outputs are compared at 1e-5 absolute +
1e-4 relative: margins and per-step losses differ by <= 2e-6 observed. Parameters are compared at
5e-5 + 1e-4 relative (<= 5e-6 observed, against >= 0.05 travelled in training, which the test also
checks so that it is not vacuous), leaving out the two directions no margin depends on (see
`output_relevant`): there Adam turns rounding noise into ±lr steps, so any two runs differ.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import yaml
from transformers import GPT2Config, GPT2LMHeadModel

from w2s_deception.models import RewardModel
from w2s_deception.train import PairExamples, predict_margins, train_reward_model

ROOT = Path(__file__).resolve().parents[1]
WORLD = 2
LAUNCH_TIMEOUT = 50  # seconds for the whole two-process run (about 15 s on a quiet 2-core machine)
SCENARIOS = {
    "features": {"n": 64, "batch": 8, "epochs": 2, "lr": 1e-2},
    "tokens": {"n": 24, "batch": 4, "epochs": 2, "lr": 1e-2},
    "uneven": {"n": 60, "batch": 8, "epochs": 1, "lr": 1e-2},
    "one_left": {"n": 17, "batch": 8, "epochs": 2, "lr": 1e-2},  # last global batch: 1 pair, none for rank 0
    "micro": {"n": 24, "batch": 4, "epochs": 2, "lr": 1e-2, "micro": 2},
    "policy": {"n": 24, "batch": 4, "epochs": 2, "lr": 1e-2, "micro": 2},
}
TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}  # margins and losses
PARAM_TOLERANCE = {"atol": 5e-5, "rtol": 1e-4}


@dataclass
class RecordingPairs(PairExamples):
    """PairExamples that remember which pair indices each collated batch held."""

    batches: list[list[int]] = field(default_factory=list)

    def collate(self, idx: list[int]) -> dict[str, torch.Tensor]:
        self.batches.append([int(i) for i in idx])
        return super().collate(idx)


def tiny_gpt2() -> GPT2LMHeadModel:
    """The 2-layer GPT-2 of the token scenarios, without dropout (seed torch first)."""
    return GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=2, n_head=2,
                                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))


def build(name: str) -> tuple[RecordingPairs, RewardModel]:
    """The scenario's pairs and fresh model, identical in every process."""
    n = SCENARIOS[name]["n"]
    g = torch.Generator().manual_seed(1)
    target = torch.rand(n, generator=g)  # soft labels, as a weak teacher gives
    helpful = torch.zeros(n, dtype=torch.bool)
    torch.manual_seed(0)
    if name in ("tokens", "micro"):
        lengths = torch.randint(3, 21, (2, n), generator=g).tolist()
        chosen, rejected = ([torch.randint(3, 64, (k,), generator=g).tolist() for k in row] for row in lengths)
        lm = tiny_gpt2()
        return RecordingPairs(target, helpful, chosen_ids=chosen, rejected_ids=rejected, pad_id=0), RewardModel(16, lm)
    return RecordingPairs(target, helpful, features=torch.randn(n, 2, 8, generator=g)), RewardModel(8)


def policy_and_pairs(n: int):
    """A tiny GPT-2 policy (seed 0) and `n` token pairs of random lengths, prompts and GT order."""
    from w2s_deception.preference import PolicyPairs

    g = torch.Generator().manual_seed(2)
    first, second = ([torch.randint(3, 64, (int(k),), generator=g).tolist()
                      for k in torch.randint(4, 21, (n,), generator=g)] for _ in range(2))
    start = lambda seqs: [int(torch.randint(1, len(s) - 1, (1,), generator=g)) for s in seqs]  # noqa: E731
    pairs = PolicyPairs(first, second, start(first), start(second), torch.rand(n, generator=g) < 0.5,
                        torch.zeros(n, dtype=torch.bool), pad_id=0)
    torch.manual_seed(0)
    return tiny_gpt2(), pairs


def simpo_explicit():
    """The explicit-conflict SimPO loss of the smoke config, as `train.fit` calls it."""
    from w2s_deception.config import get_config
    from w2s_deception.preference import po_loss_fn

    return po_loss_fn(get_config("smoke"), "simpo", "explicit")


def train_policy(batch_size: int) -> dict:
    """The `policy` scenario: a tiny GPT-2 policy under the explicit SimPO loss, as `preference` trains."""
    from w2s_deception.preference import ResponseScorer, score_pairs
    from w2s_deception.train import fit

    spec = SCENARIOS["policy"]
    lm, pairs = policy_and_pairs(spec["n"])
    initial = {k: v.detach().clone() for k, v in lm.state_dict().items()}
    losses = fit(ResponseScorer(lm), pairs, simpo_explicit(), lr=spec["lr"], epochs=spec["epochs"],
                 batch_size=batch_size, seed=0, micro_batch=spec["micro"], desc="policy")
    logps = score_pairs(lm, pairs, batch_size=4)[["logp_first", "logp_second"]].to_numpy()
    return {"batches": [], "losses": losses, "initial": initial,
            "params": {k: v.detach().clone() for k, v in lm.state_dict().items()}, "margins": torch.tensor(logps)}


def train(name: str, batch_size: int) -> dict:
    """Train one scenario; what each process saw, returned and ended with."""
    if name == "policy":
        return train_policy(batch_size)
    spec = SCENARIOS[name]
    examples, model = build(name)
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    losses = train_reward_model(model, examples, objective="no_conflict", alpha=0.0, lr=spec["lr"],
                                epochs=spec["epochs"], batch_size=batch_size, seed=0,
                                micro_batch=spec.get("micro"), desc=name)
    batches = list(examples.batches)
    return {"batches": batches, "losses": losses, "initial": initial,
            "params": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "margins": torch.from_numpy(predict_margins(model, examples))}


def cached_model_files(runs_dir: Path) -> list[str]:
    """Every process saves a model into the same run-cache entry, as `ladder.pretrain_entry` and
    `preference.sft_entry` do; the files the entry ends up with. The main process is held back a
    second, so that the other one finishes first: the order in which that process's weightless folder
    was once published (a 2-process smoke build broke on it)."""
    import time

    import pandas as pd
    from accelerate import PartialState

    from w2s_deception.cache import RunCache

    def compute(tmp: Path):
        lm = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=1, n_head=2))
        lm.save_pretrained(tmp / "model")
        if PartialState().is_main_process:
            time.sleep(1.0)
        return pd.DataFrame({"step": [0]}), {}

    entry = RunCache(runs_dir).get_or_compute("pretrain", {"probe": "save_pretrained"}, compute)
    return sorted(p.name for p in (entry.path / "model").glob("*"))


def _process(out_dir: str) -> None:
    """One process of the distributed run: every scenario with the per-process batch size."""
    from accelerate import PartialState

    torch.set_num_threads(1)
    results = {name: train(name, spec["batch"]) for name, spec in SCENARIOS.items()}
    state = PartialState()
    results["world"] = [state.process_index, state.num_processes, str(state.distributed_type), state.backend]
    results["cached_model_files"] = cached_model_files(Path(out_dir) / "runs")
    torch.save(results, Path(out_dir) / f"rank{state.process_index}.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def distributed(tmp_path_factory) -> list[dict]:
    """Results of both processes of the two-process run."""
    out = tmp_path_factory.mktemp("two-processes")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    # own session: on a timeout the launcher and both workers are killed together
    launch = [str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu", "--num_processes",
              str(WORLD), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(_free_port()), __file__, str(out)]
    proc = subprocess.Popen(launch, env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=LAUNCH_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        pytest.fail(f"two-process run did not finish in {LAUNCH_TIMEOUT} s:\n{log[-3000:]}")
    assert proc.returncode == 0, f"two-process run failed:\n{log[-3000:]}"
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


@pytest.fixture(scope="module")
def single() -> dict:
    """The same scenarios in one process (this one), with the two-process run's global batch."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' setting: same kernels, same summation order
    try:
        return {name: train(name, spec["batch"] * WORLD) for name, spec in SCENARIOS.items()}
    finally:
        torch.set_num_threads(threads)


def output_relevant(key: str, value: torch.Tensor) -> torch.Tensor:
    """The entries of a parameter that change some margin. Two directions do not: the final layer
    norm's bias adds w·β to both rewards of a pair and cancels in r(x, y_c) − r(x, y_r), and the key
    part of each attention bias shifts all of a query's scores equally, which softmax ignores. Their
    gradients are rounding noise that Adam scales up to ±lr steps, so they differ by up to lr per
    step between any two runs that round differently (1.4e-3 observed for ln_f.bias)."""
    if key.endswith("ln_f.bias"):
        return value[:0]
    if key.endswith("attn.c_attn.bias"):  # [query | key | value]
        third = value.shape[0] // 3
        return torch.cat([value[:third], value[2 * third:]])
    return value


def epochs_of(run: dict, name: str) -> list[list[list[int]]]:
    """A process's batches, split by epoch (every epoch has the same number of steps)."""
    batches, n_epochs = run[name]["batches"], SCENARIOS[name]["epochs"]
    per = len(batches) // n_epochs
    assert per * n_epochs == len(batches)
    return [batches[e * per:(e + 1) * per] for e in range(n_epochs)]


def repeats(runs: list[dict], name: str, epoch: int) -> tuple[Counter, set[int]]:
    """Pairs trained on more than once in an epoch (with counts), and pairs never trained on."""
    seen = Counter(i for run in runs for batch in epochs_of(run, name)[epoch] for i in batch)
    return Counter({i: c for i, c in seen.items() if c > 1}), set(range(SCENARIOS[name]["n"])) - set(seen)


def test_two_gloo_processes_took_part(distributed):
    assert [run["world"][:2] for run in distributed] == [[0, 2], [1, 2]]
    assert distributed[0]["world"][2:] == ["DistributedType.MULTI_CPU", "gloo"]


@pytest.mark.parametrize("name", ["features", "tokens"])
def test_each_pair_is_seen_exactly_once_per_epoch_across_processes(distributed, name):
    n_epochs = SCENARIOS[name]["epochs"]
    for epoch in range(n_epochs):
        assert repeats(distributed, name, epoch) == (Counter(), set())
        # at every step the processes hold disjoint halves of one global batch
        for a, b in zip(*(epochs_of(run, name)[epoch] for run in distributed)):
            assert len(a) == len(b) == SCENARIOS[name]["batch"] and not set(a) & set(b)
    orders = [[i for run in distributed for batch in epochs_of(run, name)[e] for i in batch] for e in range(n_epochs)]
    assert all(order != sorted(order) for order in orders), "pairs are not shuffled"
    assert len({tuple(order) for order in orders}) == n_epochs, "the same order in every epoch"


def test_uneven_pair_count_repeats_no_pair(distributed):
    duplicated, missing = repeats(distributed, "uneven", 0)
    assert not missing
    assert not duplicated, f"pairs trained twice in one epoch: {sorted(duplicated)}"


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_processes_end_with_identical_parameters(distributed, name):
    first, second = (run[name]["params"] for run in distributed)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert torch.equal(distributed[0][name]["margins"], distributed[1][name]["margins"])


@pytest.mark.parametrize("name", ["features", "tokens", "uneven", "one_left", "micro", "policy"])
def test_two_processes_match_one_process_with_the_same_global_batch(distributed, single, name):
    ours, ref = distributed[0][name], single[name]
    moved = max((ref["params"][k] - ref["initial"][k]).abs().max().item() for k in ref["params"])
    assert moved > 1000 * TOLERANCE["atol"], "training barely moved the parameters: the comparison would be vacuous"
    torch.testing.assert_close(ours["margins"], ref["margins"], **TOLERANCE)
    for key, value in ref["params"].items():
        torch.testing.assert_close(output_relevant(key, ours["params"][key]), output_relevant(key, value),
                                   **PARAM_TOLERANCE, msg=lambda m, key=key: f"{key}: {m}")


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_process_returns_the_global_batch_loss(distributed, single, name):
    for run in distributed:
        torch.testing.assert_close(torch.tensor(run[name]["losses"]), torch.tensor(single[name]["losses"]),
                                   **TOLERANCE)


def test_model_saved_into_the_cache_under_two_processes_is_complete(distributed):
    for run in distributed:
        assert {"config.json", "model.safetensors"} <= set(run["cached_model_files"]), run["cached_model_files"]


def test_trainings_entry_point_runs_named_trainings_and_whole_chapters(monkeypatch, capsys):
    """`python -m w2s_deception.trainings`, what the workflow (and `accelerate launch -m`) runs: a training
    by name, or every training of a chapter, in declaration order; an unknown name is refused."""
    from w2s_deception import trainings

    calls = []
    fake = {n: trainings.Training(n, run=lambda n=n: calls.append(n)) for n in ("simpo/matrix", "mitigations/filters",
                                                                                 "mitigations/bootstrap")}
    monkeypatch.setattr(trainings, "declared", lambda profile, chapters=None: fake)
    monkeypatch.setattr(trainings, "quiet_worker", lambda threads: None)
    assert trainings.main(["--profile", "smoke", "simpo/matrix", "mitigations"]) == 0
    assert calls == ["simpo/matrix", "mitigations/filters", "mitigations/bootstrap"]
    with pytest.raises(SystemExit):
        trainings.main(["--profile", "smoke", "thresholds"])
    assert "unknown training or chapter: thresholds" in capsys.readouterr().err


# --- FSDP config of the paper profile (no GPU needed: parsed, launched as env, wrap policy) ---

FSDP_YAML = ROOT / "configs" / "accelerate" / "fsdp.yaml"
TINY = {  # the decoder layer class of each paper family, and a tiny model of it
    "GPT2Block": ("gpt2", {"n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 32}),
    "OPTDecoderLayer": ("opt", {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "ffn_dim": 32,
                                "word_embed_proj_dim": 16, "max_position_embeddings": 32}),
    "MistralDecoderLayer": ("mistral", {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                                        "num_key_value_heads": 1, "intermediate_size": 32}),
    "LlamaDecoderLayer": ("llama", {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                                    "num_key_value_heads": 1, "intermediate_size": 32}),
}


def tiny_lm(layer: str):
    from transformers import AutoConfig, AutoModelForCausalLM

    family, sizes = TINY[layer]
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(family, vocab_size=64, **sizes))


def launch_env(*options: str) -> dict[str, str]:
    """The FSDP/accelerate environment that `accelerate launch --config_file fsdp.yaml [options] train.py`
    gives each process."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(FSDP_YAML), *options, "train.py"])
    args, _, _ = _validate_launch_command(args)
    return {k: v for k, v in prepare_multi_gpu_env(args).items() if k.startswith(("FSDP_", "ACCELERATE_"))}


def wrapped_layers(model, env: dict[str, str], monkeypatch) -> list[str]:
    """Classes of the modules that get their own FSDP unit under `env`."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    policy = fsdp2_prepare_auto_wrap_policy(plugin, model)
    return [type(m).__name__ for m in model.modules() if policy(m)]


def test_fsdp_config_is_read_by_accelerate():
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.utils import DistributedType

    raw = yaml.safe_load(FSDP_YAML.read_text(encoding="utf-8"))
    config = load_config_from_file(str(FSDP_YAML))
    assert isinstance(config, ClusterConfig)
    assert config.distributed_type == DistributedType.FSDP and config.mixed_precision == "bf16"
    assert config.fsdp_config == raw["fsdp_config"]
    env = launch_env()
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert env["FSDP_VERSION"] == "2" and env["FSDP_RESHARD_AFTER_FORWARD"] == "true"
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP" and "FSDP_TRANSFORMER_CLS_TO_WRAP" not in env


@pytest.mark.parametrize("layer", list(TINY))
def test_fsdp_config_gives_each_decoder_layer_its_own_unit(layer, monkeypatch):
    lm = tiny_lm(layer)
    assert wrapped_layers(lm, launch_env(), monkeypatch) == [layer, layer]  # policy LM: from _no_split_modules
    # the reward model names its trunk's layer class too (RewardModel._no_split_modules)
    rm = RewardModel(lm.config.hidden_size, lm)
    assert wrapped_layers(rm, launch_env(), monkeypatch) == [layer, layer]


def test_fsdp_config_leaves_a_feature_head_whole(monkeypatch):
    assert RewardModel(16)._no_split_modules is None
    assert wrapped_layers(RewardModel(16), launch_env(), monkeypatch) == []


# --- a policy under FSDP2 on CPU (gloo), sharded the way fsdp.yaml wraps it ---

FSDP_PAIRS = 8  # one global batch, 4 + 4


def _fsdp_process(out_dir: str) -> None:
    """One process of the FSDP2 run (torchrun): the policy's decoder layers and then the whole
    `ResponseScorer` fully sharded, as accelerate's FSDP2 preparation does under `fsdp.yaml`'s wrap
    policy, and the gradient of one explicit-SimPO step on this process's half of the pairs."""
    import torch.distributed as dist
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy
    from torch.distributed.fsdp import fully_shard

    from w2s_deception.preference import ResponseScorer

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    os.environ.update(launch_env())
    lm, pairs = policy_and_pairs(FSDP_PAIRS)
    scorer = ResponseScorer(lm)
    policy = fsdp2_prepare_auto_wrap_policy(FullyShardedDataParallelPlugin(), scorer)
    units = [m for m in scorer.modules() if policy(m) and m is not scorer]
    names = [type(m).__name__ for m in units]  # before fully_shard renames the classes (FSDPGPT2Block)
    for module in units:
        fully_shard(module)
    fully_shard(scorer)
    half = FSDP_PAIRS // WORLD
    loss = simpo_explicit()(scorer, pairs.collate(list(range(rank * half, (rank + 1) * half))))
    loss.backward()  # FSDP averages the processes' gradients: the mean over all pairs
    grads = {k: p.grad.full_tensor() for k, p in scorer.named_parameters()}  # collective
    sharded = {k: tuple(p.to_local().shape) for k, p in scorer.named_parameters()}
    torch.save({"units": names, "grads": grads, "local_shapes": sharded},
               Path(out_dir) / f"fsdp{rank}.pt")
    dist.destroy_process_group()


def test_policy_gradient_under_fsdp2_matches_one_process(tmp_path):
    """What the paper profile's FSDP config does to a policy, on two CPU processes: each decoder layer
    its own unit, parameters sharded, and the SimPO step's gradient (LM head on response positions
    inside the sharded module's forward) equal to one process's over the same 8 pairs. accelerate
    itself runs FSDP on GPUs only (on CPU it falls back to DDP), so this shards with torch's
    `fully_shard` the way accelerate's FSDP2 preparation does; `fit` under FSDP is not exercised."""
    from w2s_deception.preference import ResponseScorer

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(WORLD), __file__, str(tmp_path), "fsdp"], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=LAUNCH_TIMEOUT)
    assert proc.returncode == 0, f"FSDP run failed:\n{(proc.stdout + proc.stderr)[-3000:]}"
    runs = [torch.load(tmp_path / f"fsdp{r}.pt") for r in range(WORLD)]
    assert runs[0]["units"] == ["GPT2Block", "GPT2Block"]
    lm, pairs = policy_and_pairs(FSDP_PAIRS)
    scorer = ResponseScorer(lm)
    simpo_explicit()(scorer, pairs.collate(list(range(FSDP_PAIRS)))).backward()
    full = dict(scorer.named_parameters())
    assert runs[0]["grads"].keys() == full.keys()
    for key, param in full.items():
        assert runs[0]["local_shapes"][key][0] < param.shape[0] or param.shape[0] == 1, f"{key} is not sharded"
        for run in runs:
            torch.testing.assert_close(run["grads"][key], param.grad, atol=1e-6, rtol=1e-4,
                                       msg=lambda m, key=key: f"{key}: {m}")


if __name__ == "__main__":  # one process of a multi-process run (accelerate launch / torchrun): OUT_DIR [fsdp]
    _fsdp_process(sys.argv[1]) if sys.argv[2:] == ["fsdp"] else _process(sys.argv[1])
