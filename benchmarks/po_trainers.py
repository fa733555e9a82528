"""Policy trainers: this project's SimPO and DPO steps, and TRL's DPOTrainer and CPOTrainer(simpo).

All train the same initial GPT-2-architecture LM (no SFT first: the step itself is measured) on the
same pairs, batch size, learning rate and seed, one epoch, fp32, with the SPEC's hyper-parameters
(SimPO β = 2, γ = 1; DPO β = 0.1, reference = the initial model).

- `project-simpo` / `project-dpo`: `w2s_deception.train.fit` with `preference.po_loss_fn`, on
  `preference.PolicyPairs` built from the workload's token ids, as `preference._train_policy`
  does; DPO's timed part includes scoring the pairs with the reference (`preference.score_pairs`).
- `trl ...`: only where `trl` is importable (`pip install -e '.[bench]'`); gradient checkpointing
  and bf16 switched off (TRL's defaults switch both on). TRL tokenises the text itself and keeps the
  start of long sequences, so prompts are first cut to their last max_length − 24 tokens (the
  responses survive, as they do in the project). Their tokens are counted from TRL's tokenised
  datasets: prompt + response of both sides after TRL's truncation to max_length.
"""

from __future__ import annotations

from dataclasses import replace

from registry import POLICY, RunResult, Workload, register

from w2s_deception.config import Config

PROMPT_KEEP = 24  # response tokens kept at least: prompts are cut (from the left) to max_length - this
PAIRS = 32  # one step: these rows cost 2-4× a reward-model row per pair


def policy_pairs(w: Workload):
    """The workload's pairs in ground-truth order as the project's policy trainer takes them."""
    import torch

    from w2s_deception.preference import PolicyPairs

    n = len(w)
    return PolicyPairs(w.chosen_ids, w.rejected_ids, w.chosen_start, w.rejected_start,
                       torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool), w.pad_id)


def project_po(w: Workload, method: str, micro_batch: int | None = Config.micro_batch,
               compiled: bool = False) -> RunResult:
    """Train a policy with the project's `fit` + `po_loss_fn`, `micro_batch` pairs per forward pass.

    DPO's reference log-probs are scored as the book scores them (`cfg.micro_batch` pairs per
    pass) whatever `micro_batch` the timed training uses, so rows differ only in the step timed.
    """
    import torch

    from w2s_deception.config import get_config
    from w2s_deception.preference import ResponseScorer, po_loss_fn, score_pairs
    from w2s_deception.train import fit

    cfg = get_config("cpu")  # simpo_beta 2, simpo_gamma 1, dpo_beta 0.1
    pairs = policy_pairs(w)
    torch.manual_seed(w.seed)
    lm = w.lm()
    if compiled:  # the transformer only: the LM head runs on scored positions (`response_logps`)
        lm.transformer = torch.compile(lm.transformer, dynamic=True)
    with w.timer() as t:
        if method == "dpo":
            ref = score_pairs(lm, pairs, cfg.micro_batch)
            pairs = replace(pairs, ref_first=torch.tensor(ref["logp_first"].to_numpy(), dtype=torch.float32),
                            ref_second=torch.tensor(ref["logp_second"].to_numpy(), dtype=torch.float32))
        losses = fit(ResponseScorer(lm), pairs, po_loss_fn(cfg, method, "no_conflict"), lr=w.lr, epochs=w.epochs,
                     batch_size=w.batch_size, micro_batch=micro_batch, seed=w.seed,
                     desc=f"bench {method}")
    return RunResult(w.rm_tokens(), t, losses)


@register("project-simpo", group=POLICY, what="w2s_deception SimPO step (train.fit + preference.po_loss_fn)",
          max_pairs=PAIRS)
def project_simpo(w: Workload) -> RunResult:
    return project_po(w, "simpo")


@register("project-simpo (whole batches)", group=POLICY, max_pairs=PAIRS, same_order_as="project-simpo",
          what="the same step with the batch in one forward pass (the loop before 28 Nov)")
def project_simpo_whole(w: Workload) -> RunResult:
    return project_po(w, "simpo", micro_batch=None)


@register("project-simpo+compile", group=POLICY, max_pairs=PAIRS, same_order_as="project-simpo",
          what="the same step, transformer under torch.compile (dynamic shapes), compiled during the warm-up")
def project_simpo_compile(w: Workload) -> RunResult:
    return project_po(w, "simpo", compiled=True)


@register("project-dpo", group=POLICY, what="w2s_deception DPO step, reference scoring included", max_pairs=PAIRS)
def project_dpo(w: Workload) -> RunResult:
    return project_po(w, "dpo")


def policy_dataset(w: Workload):
    """prompt/chosen/rejected strings, prompts shortened to their last max_length - PROMPT_KEEP tokens
    (TRL keeps the start of a sequence, the project its end; this way both keep the responses)."""
    import datasets

    tok = w.tokenizer()
    keep = w.max_length - PROMPT_KEEP
    prompts = []
    for p in w.prompts:
        ids = tok(p, add_special_tokens=False)["input_ids"]
        prompts.append(p if len(ids) <= keep else tok.decode(ids[-keep:]))
    return datasets.Dataset.from_dict({"prompt": prompts, "chosen": w.chosen, "rejected": w.rejected}), tok


def common_args(w: Workload) -> dict:
    import datasets

    datasets.disable_progress_bars()
    return dict(output_dir=str(w.workdir / "trl-out"), per_device_train_batch_size=w.batch_size,
                num_train_epochs=w.epochs, learning_rate=w.lr, max_length=w.max_length, seed=w.seed,
                bf16=False, gradient_checkpointing=False, use_cpu=True, report_to="none", save_strategy="no",
                logging_steps=1, disable_tqdm=True, dataloader_num_workers=0, lr_scheduler_type="constant",
                remove_unused_columns=False, log_level="error")


def quiet(trainer):
    """No per-step log lines on stdout (the benchmark prints one table)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer


def losses_of(trainer) -> list[float]:
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


@register("trl DPOTrainer", group=POLICY, what="TRL DPO (β=0.1, reference = initial model), fp32",
          requires="trl", max_pairs=PAIRS)
def trl_dpo(w: Workload) -> RunResult:
    from trl import DPOConfig, DPOTrainer

    data, tok = policy_dataset(w)
    args = DPOConfig(beta=0.1, **common_args(w))
    trainer = quiet(DPOTrainer(model=w.lm(), ref_model=w.lm(), args=args, train_dataset=data, processing_class=tok))
    ds = trainer.train_dataset
    tokens = w.epochs * sum(min(len(p) + len(c), w.max_length) + min(len(p) + len(r), w.max_length)
                            for p, c, r in zip(ds["prompt_ids"], ds["chosen_ids"], ds["rejected_ids"]))
    with w.timer() as t:
        trainer.train()
    return RunResult(tokens, t, losses_of(trainer), {"pairs after TRL filtering": len(ds)})


@register("trl CPOTrainer simpo", group=POLICY, what="TRL CPO loss_type=simpo (β=2, γ=1, cpo_alpha=0), fp32",
          requires="trl", max_pairs=PAIRS)
def trl_simpo(w: Workload) -> RunResult:
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    data, tok = policy_dataset(w)
    args = CPOConfig(loss_type="simpo", beta=2.0, simpo_gamma=1.0, cpo_alpha=0.0, **common_args(w))
    trainer = quiet(CPOTrainer(model=w.lm(), args=args, train_dataset=data, processing_class=tok))
    ds = trainer.train_dataset
    tokens = w.epochs * sum(len(c) + len(r) for c, r in zip(ds["chosen_input_ids"], ds["rejected_input_ids"]))
    with w.timer() as t:
        trainer.train()
    return RunResult(tokens, t, losses_of(trainer), {"pairs after TRL filtering": len(ds)})
