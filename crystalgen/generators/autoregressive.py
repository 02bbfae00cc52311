"""The autoregressive family (CrystaLLM-style, written in-house): one decoder-only transformer
(:class:`~crystalgen.nn.transformer.DecoderTransformer`) over a tokenizer, trained with the shared
:class:`~crystalgen.training.Trainer` on next-token prediction.

Tokenizers (:mod:`crystalgen.generators.tokenizers`): ``cif-tokens``, canonical symmetric CIFs,
whose CSP prompts are ``data_``, the target's formula, the space-group keyword and the target's
group when it gives one; and ``slices``, SLICES-style strings, whose CSP prompts are the target's
atoms. Generation from scratch starts from the start token alone (the atoms are sampled, within
the target's element set if it has one). Decoding is batched, with a key-value cache, temperature
and top-k, and constrained by the tokenizer's grammar: every token outside what the canonical form
allows next is masked, so each sample has exactly the requested composition. Every sequence then
goes through the tokenizer's checks; those that fail are left out of the samples and counted by
cause in :attr:`AutoregressiveGenerator.check_counts`.

Config (YAML, see ``configs/models/cif-tokens-*.yaml``)::

    name: cif-tokens-perov_5
    family: autoregressive
    tokenizer: cif-tokens
    task: csp
    protocol: perov_5
    model: {dim: 192, layers: 4, heads: 6, max_len: 160}
    training: {steps: 6000, batch_size: 64, lr: 0.0005, lr_schedule: cosine}
    sampling: {temperature: 1.0, top_k: 0, batch_size: 512}
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crystalgen.config_sections import checked_section, section_dataclass
from crystalgen.crystal import Crystal
from crystalgen.devices import resolve_device
from crystalgen.errors import CrystalgenInputError
from crystalgen.generators.base import Generator, SampleOptions, Target
from crystalgen.generators.template import SPACEGROUP_PROPERTY
from crystalgen.generators.tokenizers import TOKENIZERS, build_tokenizer
from crystalgen.metrics.check_counts import CheckCounts
from crystalgen.models.base import TrainingRun, load_weights
from crystalgen.models.capabilities import CSP, GEN, Capabilities
from crystalgen.nn.transformer import DecoderTransformer, TransformerConfig, masked_log_probs, sample_next
from crystalgen.training.fitting import TrainsOnProtocol

CANDIDATE_PICKS = ("first-valid", "most-likely")
#: Every tokenizer pads with id 0.
PAD_ID = 0
#: Atom count cap for a model whose config never recorded its training set's largest cell.
_NO_ATOM_LIMIT = 10_000
_MODEL_KEYS = {f.name for f in fields(TransformerConfig)} - {"vocab_size"}


@dataclass(frozen=True)
class DecodingConfig:
    temperature: float = 1.0
    #: Keep only the k most likely allowed tokens; 0 keeps all.
    top_k: int = 0
    #: Sequences decoded together.
    batch_size: int = 512
    #: Whether to reuse each layer's keys and values (False recomputes the whole prefix each step).
    use_cache: bool = True
    #: Sequences drawn per requested sample, of which n that pass the checks are kept. 1 keeps every draw.
    candidates: int = 1
    #: Which n of the candidates: "first-valid" (in the order drawn: a failed draw is replaced by
    #: the next one) or "most-likely" (under the model, grammar masked, temperature 1).
    pick: str = "first-valid"

    def __post_init__(self) -> None:
        if self.candidates < 1:
            raise CrystalgenInputError(f"sampling.candidates must be at least 1, got {self.candidates}")
        if self.pick not in CANDIDATE_PICKS:
            raise CrystalgenInputError(f"sampling.pick must be one of {', '.join(CANDIDATE_PICKS)}, got {self.pick!r}")


@dataclass
class TokenBatch:
    ids: torch.Tensor  # (batch, length), padded with the PAD id

    def to(self, device: torch.device | str) -> "TokenBatch":
        return TokenBatch(self.ids.to(device))


def collate_tokens(items: list[torch.Tensor]) -> TokenBatch:
    """Pad token sequences into one batch."""
    return TokenBatch(nn.utils.rnn.pad_sequence(items, batch_first=True, padding_value=PAD_ID))


class TokenLanguageModel(nn.Module):
    """Next-token cross-entropy on a :class:`TokenBatch` (padding ignored)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.net = DecoderTransformer(config)

    def forward(self, batch: TokenBatch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        logits = self.net(batch.ids[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.ids[:, 1:].reshape(-1), ignore_index=0)
        return {"loss": loss}


class AutoregressiveGenerator(TrainsOnProtocol, Generator):
    family = "autoregressive"

    @classmethod
    def capabilities_for(cls, config: dict) -> Capabilities:
        # a model of whole sequences, atoms included, serves both tasks
        tokenizer = TOKENIZERS.get(config.get("tokenizer", "cif-tokens"), TOKENIZERS["cif-tokens"])
        return Capabilities(tasks=frozenset({CSP, GEN}), conditions=tokenizer.conditions | {"elements"},
                            options=frozenset({"temperature", "top_k", "device"}), trained=True)

    def __init__(self, config: dict | None = None) -> None:
        from crystalgen.training import TrainConfig

        super().__init__(config)
        self.task = self.config.setdefault("task", CSP)
        if self.task not in (CSP, GEN):
            raise CrystalgenInputError(f"autoregressive task must be 'csp' or 'gen', got {self.task!r}")
        self.tokenizer = build_tokenizer(self.config.setdefault("tokenizer", "cif-tokens"))
        self.vocabulary = self.tokenizer.vocabulary
        defaults = TransformerConfig(vocab_size=len(self.vocabulary))
        settings = checked_section("model", self.config.get("model"), {k: getattr(defaults, k) for k in _MODEL_KEYS})
        self.model = TokenLanguageModel(TransformerConfig(vocab_size=len(self.vocabulary), **settings))
        self.train_config: TrainConfig = section_dataclass(self.config, "training", TrainConfig)
        self.decoding: DecodingConfig = section_dataclass(self.config, "sampling", DecodingConfig)
        self.check_counts = CheckCounts()
        #: Positions decoded so far (prompts and forced tokens included), for speed measurements.
        self.decoded_tokens = 0
        self._fitted = False

    # ------------------------------------------------------------------ fitting
    @property
    def is_fitted(self) -> bool:
        return self._fitted

    def fit_crystals(self, train: Sequence[Crystal], run: TrainingRun) -> None:
        from crystalgen.training import train_model

        sequences, left_out = [], {"not encodable": 0, "longer than max_len": 0}
        for crystal in train:
            try:
                ids = self.tokenizer.encode(crystal)
            except Exception:  # spglib, the fixed-width fields or the image labels cannot describe it
                left_out["not encodable"] += 1
                continue
            if len(ids) > self.model.net.config.max_len:
                left_out["longer than max_len"] += 1
                continue
            sequences.append(torch.tensor(ids, dtype=torch.long))
        if not sequences:
            raise CrystalgenInputError(f"no training structure could be tokenised within max_len: {left_out}")
        self.config.setdefault("max_atoms", max(c.num_atoms for c in train))
        if self.config.get("init_from"):  # continue a run of an earlier session from its shipped weights
            self._initialise_from(str(self.config["init_from"]))
        self.training_summary = train_model(self.model, sequences, self.train_config, run, collate_fn=collate_tokens,
                                            sizes=[len(s) for s in sequences])
        self.training_summary["left_out"] = left_out
        self.training_summary["tokens_per_sequence"] = float(np.mean([len(s) for s in sequences]))
        self.model.cpu()
        self._fitted = True

    def _initialise_from(self, name: str) -> None:
        from crystalgen.models.registry import load_model

        source = load_model(name)
        if not isinstance(source, AutoregressiveGenerator):
            raise CrystalgenInputError(f"init_from {name!r} is a {source.family} model, not an autoregressive one")
        load_weights(self.model, source.model.state_dict(), f"init_from {name!r}")
        self.model.train()

    def state(self) -> dict[str, Any]:
        return {k: v.detach().cpu().float() for k, v in self.model.state_dict().items()}

    def load_state(self, tensors: dict[str, Any], data_dir: str | os.PathLike | None = None) -> None:
        load_weights(self.model, tensors, f"autoregressive checkpoint {self.name!r}")
        self._fitted = True

    # ------------------------------------------------------------------ sampling
    def check_target(self, target: Target) -> None:
        super().check_target(target)
        if target.composition is None and target.spacegroup is not None:
            raise CrystalgenInputError(f"model {self.name!r} takes a space group only with a composition (the "
                                       "formula comes first in a CIF)")

    def prompt(self, target: Target) -> list[int]:
        """The tokenizer's prompt for the target's composition (and space group), or its start token alone."""
        composition = None if target.composition is None else _counts(target)
        return self.tokenizer.prompt(composition, target.spacegroup)

    def _sample(self, targets: list[Target], n: int, seed: int, options: SampleOptions) -> list[list[Crystal]]:
        device = resolve_device(options.device or "cpu")
        self.model.to(device)
        generator = torch.Generator(device).manual_seed(seed)
        draws = n * self.decoding.candidates
        repeated = [t for t in targets for _ in range(draws)]
        formulas = [None if t.composition is None else _counts(t) for t in repeated]
        scored: list[list[tuple[float, int, Crystal]]] = [[] for _ in targets]
        size = self.decoding.batch_size
        for start in range(0, len(repeated), size):
            sequences, log_likelihoods = self.decode(repeated[start:start + size], generator, options, device)
            checks = self.tokenizer.check(sequences, formulas[start:start + size])
            for offset, (checked, score) in enumerate(zip(checks, log_likelihoods)):
                self.check_counts.add(checked)
                if checked.crystal is not None:
                    spacegroup = self.tokenizer.stated_spacegroup(checked)
                    if spacegroup is not None:
                        checked.crystal.properties[SPACEGROUP_PROPERTY] = float(spacegroup)
                    scored[(start + offset) // draws].append((score, start + offset, checked.crystal))
        if self.decoding.pick == "most-likely":
            scored = [sorted(group, key=lambda g: (-g[0], g[1])) for group in scored]
        return [[crystal for _, _, crystal in group[:n]] for group in scored]

    @torch.no_grad()
    def decode(self, targets: list[Target], generator: torch.Generator, options: SampleOptions,
               device: torch.device) -> tuple[list[list[int]], list[float]]:
        """Grammar-constrained decoding of one sequence per target, one position per step for every
        sequence; also each sequence's log-likelihood under the model (masked, temperature 1)."""
        temperature = options.temperature or self.decoding.temperature
        top_k = options.top_k or self.decoding.top_k or None
        net = self.model.net
        max_atoms = int(self.config.get("max_atoms", 0)) or _NO_ATOM_LIMIT
        states = [self.tokenizer.decoding_state(self.prompt(t), t.elements, max_atoms) for t in targets]
        cache = net.new_cache() if self.decoding.use_cache else None
        sequence = torch.zeros(len(states), 0, dtype=torch.long, device=device)
        allowed = torch.zeros(len(states), len(self.vocabulary), dtype=torch.bool)
        first = torch.tensor([s.allowed()[0] for s in states], device=device)  # the start token
        for state, token in zip(states, first.tolist()):
            state.push(token)
        sequence = first[:, None]
        log_likelihood = torch.zeros(len(states), dtype=torch.float64, device=device)
        for _ in range(net.config.max_len - 1):
            if all(s.finished for s in states):
                break
            logits = net(sequence[:, -1:] if cache is not None else sequence, cache)[:, -1]
            allowed.zero_()
            for row, state in enumerate(states):
                allowed[row, state.allowed()] = True
            mask = allowed.to(device)
            token = sample_next(logits, mask, temperature, top_k, generator)
            log_likelihood += masked_log_probs(logits, mask).gather(1, token[:, None]).squeeze(1).double()
            for state, t in zip(states, token.tolist()):
                state.push(t)
            sequence = torch.cat([sequence, token[:, None]], dim=1)
        decoded = [[t for t in row if t != PAD_ID] for row in sequence.tolist()]
        self.decoded_tokens += sum(len(row) for row in decoded)
        return decoded, log_likelihood.tolist()

    def sampling_report(self) -> dict:
        return self.check_counts.as_dict()

    def describe_sampling(self, options: SampleOptions | None = None) -> str:
        options = options or SampleOptions()
        best_of = (f", the {self.decoding.pick} of {self.decoding.candidates} draws per sample"
                   if self.decoding.candidates > 1 else "")
        return (f"grammar-constrained decoding, temperature {options.temperature or self.decoding.temperature:g}, "
                f"top-k {options.top_k or self.decoding.top_k or 'off'}, key-value cache "
                f"{'on' if self.decoding.use_cache else 'off'}{best_of}")

    def describe_architecture(self) -> str:
        config = self.model.net.config
        parameters = sum(p.numel() for p in self.model.parameters())
        return (f"{parameters:,} parameters; decoder-only transformer, {config.layers} layers, width {config.dim}, "
                f"{config.heads} heads, up to {config.max_len} tokens; {self.config['tokenizer']} vocabulary of "
                f"{len(self.vocabulary)} tokens")

    def card_notes(self, fit_wall_s: float) -> str:
        summary = self.training_summary
        lines = f"- **Sampler:** {self.describe_sampling()}\n"
        if self.config.get("init_from"):
            lines += f"- **Initialised from:** the weights of `{self.config['init_from']}`\n"
        if "left_out" in summary:
            lines += (f"- **Training structures left out:** {summary['left_out']}; mean "
                      f"{summary['tokens_per_sequence']:.1f} tokens per sequence\n")
        return lines


def _counts(target: Target) -> dict[str, int]:
    return {el.symbol: int(round(n)) for el, n in target.composition.items()}


__all__ = ["AutoregressiveGenerator", "DecodingConfig", "TokenBatch", "TokenLanguageModel", "collate_tokens"]
