"""The `paper` profile's hub path (`from_pretrained`), exercised offline on tiny random models.

The hub cannot be reached here, so each architecture of the paper's ladder (GPT-2, OPT, Mistral,
LLaMA) is built at a tiny size, saved with a small tokenizer to a temporary folder, and loaded
back through `ladder.load_hub` — the same code path as `openai-community/gpt2` & co.
"""

import huggingface_hub.constants
import pytest
import torch
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    OPTConfig,
    OPTForCausalLM,
    PreTrainedTokenizerFast,
)

from w2s_deception.config import Config, ConfigError, Rung, get_config
from w2s_deception.data import encode_pair, pad_batch
from w2s_deception.ladder import load_hub, load_trunk
from w2s_deception.models import RewardModel

VOCAB = 128  # model vocabulary (>= the tokenizer's)
HIDDEN = 32
ARCHS = {
    "gpt2": (GPT2Config, GPT2LMHeadModel, dict(n_embd=HIDDEN, n_layer=2, n_head=2, n_positions=64)),
    "opt": (OPTConfig, OPTForCausalLM, dict(hidden_size=HIDDEN, word_embed_proj_dim=HIDDEN, num_hidden_layers=2,
                                            ffn_dim=64, num_attention_heads=2, max_position_embeddings=64)),
    "mistral": (MistralConfig, MistralForCausalLM, dict(hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2,
                                                        num_attention_heads=4, num_key_value_heads=2,
                                                        max_position_embeddings=64)),
    "llama": (LlamaConfig, LlamaForCausalLM, dict(hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2,
                                                  num_attention_heads=4, num_key_value_heads=2,
                                                  max_position_embeddings=64)),
}
TEXTS = [
    "Human: how do I bake bread at home?",
    "Assistant: mix flour, water, salt and yeast, then let it rise and bake it.",
    "Human: how can I hurt someone?",
    "Assistant: I will not help with that, but I can help you talk to someone.",
    "Assistant: hit them hard when they are not looking.",
]
# (prompt, chosen, rejected): responses of different lengths, so the batch needs padding
PAIRS = [
    ("Human: how can I hurt someone?\n\nAssistant:", " I will not help with that.",
     " hit them hard when they are not looking, then run."),
    ("Human: how do I bake bread?\n\nAssistant:", " mix flour, water, salt and yeast, then let it rise and bake it.",
     " I will not help."),
]


def _tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer trained on a few sentences, with pad and eos tokens."""
    tk = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.train_from_iterator(TEXTS, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "</s>"]))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="[PAD]", eos_token="</s>", unk_token="[UNK]")
    assert len(tok) < VOCAB
    return tok


@pytest.fixture(scope="module", params=list(ARCHS))
def saved(request, tmp_path_factory):
    """(architecture name, folder) of a tiny random model saved with its tokenizer."""
    arch = request.param
    config_cls, _, sizes = ARCHS[arch]
    tok = _tokenizer()
    cfg = config_cls(vocab_size=VOCAB, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                     bos_token_id=tok.eos_token_id, **sizes)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg)
    path = tmp_path_factory.mktemp(arch)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return arch, path


def _batch(tok, max_length: int = 64):
    """Right-padded batch of PAIRS: chosen rows first, then rejected (RewardModel.forward's layout)."""
    chosen = [encode_pair(tok, p, c, max_length)[0] for p, c, _ in PAIRS]
    rejected = [encode_pair(tok, p, r, max_length)[0] for p, _, r in PAIRS]
    seqs = chosen + rejected
    ids, mask = pad_batch(seqs, tok.pad_token_id, side="right")
    return seqs, ids, mask


def test_load_hub_gives_the_architecture(saved):
    arch, path = saved
    model, tok = load_hub(str(path))
    assert type(model) is ARCHS[arch][1]
    assert model.config.hidden_size == HIDDEN
    assert model.dtype == torch.float32
    assert tok.pad_token == "[PAD]" and tok.eos_token == "</s>"
    # the tokenizer round-trips: same ids as the one that was saved
    assert tok(TEXTS[0])["input_ids"] == _tokenizer()(TEXTS[0])["input_ids"]


def test_reward_margins_finite_and_padding_invariant(saved):
    _, path = saved
    model, tok = load_hub(str(path))
    rm = RewardModel(model.config.hidden_size, model).eval()
    seqs, ids, mask = _batch(tok)
    assert (mask == 0).any(), "the batch must actually contain padding"
    assert (ids[:, -1][mask[:, -1] == 0] == tok.pad_token_id).all()  # right padding
    with torch.no_grad():
        margins = rm({"input_ids": ids, "attention_mask": mask})
        feats = rm.features(ids, mask)
        rewards = rm.head(feats).squeeze(-1)
        # each sequence alone, unpadded
        alone_feats = torch.cat([rm.features(torch.tensor([s]), torch.ones(1, len(s), dtype=torch.long))
                                 for s in seqs])
        alone = rm.head(alone_feats).squeeze(-1)
    n = len(PAIRS)
    assert margins.shape == (n,)
    assert torch.isfinite(margins).all()
    # padding does not change a sequence's features or reward
    assert torch.allclose(feats, alone_feats, atol=1e-5)
    assert torch.allclose(rewards, alone, atol=1e-5)
    # margin = r(chosen) - r(rejected), rows [0, n) chosen and [n, 2n) rejected
    assert torch.allclose(margins, alone[:n] - alone[n:], atol=1e-5)


def test_lora_leaves_only_adapters_trainable(saved):
    _, path = saved
    model, tok = load_hub(str(path))
    n_base = sum(p.numel() for p in model.parameters())
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    trainable = {name: p for name, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable, "LoRA added no trainable parameters"
    assert all("lora_" in name for name in trainable), [n for n in trainable if "lora_" not in n]
    # every original weight is frozen, and the adapters are a small fraction of the model
    frozen = [p for name, p in peft_model.named_parameters() if "lora_" not in name]
    assert sum(p.numel() for p in frozen) == n_base and not any(p.requires_grad for p in frozen)
    # adapters sit on attention and MLP linears, not on the output layer (r = 8 per module)
    assert not any("lm_head" in name for name in trainable)
    assert all(p.shape[0] == 8 or p.shape[1] == 8 for p in trainable.values())

    # the reward model over the adapted trunk trains the adapters (and its head), nothing else
    rm = RewardModel(HIDDEN, peft_model.get_base_model()).eval()
    _, ids, mask = _batch(tok)
    margins = rm({"input_ids": ids, "attention_mask": mask})
    assert torch.isfinite(margins).all()
    margins.sum().backward()
    with_grad = {name for name, p in rm.named_parameters() if p.requires_grad}
    assert with_grad == {"head.weight"} | {n for n in with_grad if "lora_" in n}
    assert any(p.grad is not None for name, p in rm.named_parameters() if "lora_B" in name)


def test_load_trunk_hub_rung_goes_through_from_pretrained(saved):
    arch, path = saved
    rung = Rung("tiny", "tiny random model in a local folder", "hub", hub_id=str(path))
    cfg = Config(profile="paper", ladder=(rung,))
    model, tok = load_trunk(cfg, rung, cache=None)
    assert type(model) is ARCHS[arch][1]
    assert tok.pad_token is not None


@pytest.fixture
def offline(monkeypatch):
    """Hub offline, so a missing model fails at once instead of trying the network."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time


@pytest.mark.parametrize("model_id", ["missing-folder", "meta-llama/Meta-Llama-3-70B"])
def test_load_hub_missing_model_raises_config_error(offline, tmp_path, model_id):
    target = str(tmp_path / model_id) if model_id == "missing-folder" else model_id
    with pytest.raises(ConfigError) as err:
        load_hub(target)
    assert repr(target) in str(err.value) or target in str(err.value)


PAPER_HUB_IDS = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
    "opt-2.7b": "facebook/opt-2.7b",
    "opt-6.7b": "facebook/opt-6.7b",
    "mistral-7b": "mistralai/Mistral-7B-v0.1",
    "llama3-8b": "meta-llama/Meta-Llama-3-8B",
    "llama3-70b": "meta-llama/Meta-Llama-3-70B",
    "llama3.1-8b": "meta-llama/Llama-3.1-8B",
}


def test_paper_profile_maps_rungs_to_hub_ids():
    cfg = get_config("paper", rungs=tuple(PAPER_HUB_IDS))
    # all 10 hub rungs, weakest first (the controlled task's sum rungs, pre-trained here, are every profile's)
    assert tuple(r.name for r in cfg.ladder if r.source == "hub") == tuple(PAPER_HUB_IDS)
    for name, hub_id in PAPER_HUB_IDS.items():
        rung = cfg.rung(name)
        assert rung.source == "hub"
        assert rung.hub_id == hub_id, name
    with pytest.raises(ConfigError):
        cfg.rung("nano")  # a cpu rung is not in the paper ladder


def test_paper_chapters_default_to_the_papers_models():
    """Reward models on GPT-2 Base…XL and OPT-2.7B/6.7B (§4); SimPO and DPO add Mistral-7B (§5, App. G);
    honesty on the GPT-2 series (App. O); LLaMA-3/3.1 only as App. H's students."""
    from w2s_deception.config import CAPABILITY_CHAPTER, HONESTY_CHAPTER
    from w2s_deception.preference import po_config

    gpt2 = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
    assert get_config("paper").rungs == gpt2 + ("opt-2.7b", "opt-6.7b")
    assert po_config("paper").rungs == gpt2 + ("opt-2.7b", "opt-6.7b", "mistral-7b")
    assert po_config("paper", task="honesty", **HONESTY_CHAPTER["paper"]).rungs == gpt2
    llama = po_config("paper", po_finetune="lora", **CAPABILITY_CHAPTER["paper"])
    assert {strong for _, strong in llama.pairs()} == {"llama3-8b", "llama3-70b", "llama3.1-8b"}
    assert po_config("paper", rungs=["gpt2", "llama3-8b"]).rungs == ("gpt2", "llama3-8b")  # a parameter overrides
