"""SLICES strings as tokens: vocabulary, the decoding grammar, the checks, and a SLICES-trained model."""

from __future__ import annotations

import pytest
import torch

from crystalgen.errors import CrystalgenInputError
from crystalgen.generators.autoregressive import AutoregressiveGenerator
from crystalgen.generators.target import Target
from crystalgen.generators.tokenizers import SlicesTokenizer
from crystalgen.metrics.slices_validity import check_slices_sequences
from crystalgen.models.base import TrainingRun
from crystalgen.representations.slices import Slices, SlicesError
from crystalgen.representations.slices_tokens import LABELS, SlicesDecodingState, slices_vocabulary

from conftest import make_perovskite

TINY = {"dim": 32, "layers": 2, "heads": 2, "max_len": 96}
ROCK_SALT = "Na Cl 0 1 --o 0 1 -o- 0 1 -oo 0 1 o-- 0 1 o-o 0 1 oo-"


def test_labels_are_the_27_offsets_in_canonical_order():
    assert len(LABELS) == 27 and LABELS[0] == "---" and LABELS[13] == "ooo" and LABELS[-1] == "+++"


def test_strings_and_tokens_round_trip_and_bad_ones_name_the_problem():
    vocab = slices_vocabulary()
    ids = vocab.encode_string(ROCK_SALT)
    assert vocab.decode_string(ids) == ROCK_SALT
    assert len(ids) == 1 + 2 + 1 + 6 * 3 + 1
    with pytest.raises(SlicesError, match="image label 'xyz'") as failure:
        vocab.encode_string("Na Cl 0 1 xyz")
    assert failure.value.cause == "parse"
    with pytest.raises(SlicesError, match="<eos>"):
        vocab.decode_string(ids[:-1])


def test_the_grammar_accepts_every_canonical_encoding(any_crystal):
    tokenizer = SlicesTokenizer()
    try:
        ids = tokenizer.encode(any_crystal)
    except SlicesError as exc:
        pytest.skip(f"this crystal has no SLICES string: {exc}")
    state = tokenizer.decoding_state(ids[:1], None, 40)
    for token in ids:
        assert token in state.allowed()
        state.push(token)
    assert state.finished


def test_random_walks_of_the_grammar_parse_cover_every_atom_and_keep_the_prompt():
    tokenizer = SlicesTokenizer()
    vocab = tokenizer.vocabulary
    generator = torch.Generator().manual_seed(0)
    for walk in range(20):
        prompt = tokenizer.prompt({"Ti": 1, "O": 2, "Sr": 1} if walk % 2 else None, None)
        state = tokenizer.decoding_state(prompt, frozenset({"Li", "O"}), 6)
        while not state.finished:
            allowed = state.allowed()
            assert allowed, "the grammar left no way to continue"
            state.push(allowed[int(torch.randint(len(allowed), (1,), generator=generator))])
        text = vocab.decode_string(state.tokens)
        atoms = text.split()[:text.split().index(next(w for w in text.split() if w.isdigit()))]
        if walk % 2:
            assert atoms == ["O", "O", "Ti", "Sr"]  # by atomic number
        else:
            assert set(atoms) <= {"Li", "O"} and len(atoms) <= 6
        checked = check_slices_sequences(vocab, [state.tokens], [None])[0]
        assert checked.failure not in ("parse", "coverage")


def test_a_loop_is_written_with_its_first_offset_positive_and_edges_never_repeat():
    vocab = slices_vocabulary()
    state = SlicesDecodingState(vocab, vocab.encode_string("Po 0 0 +oo")[:3])
    for token in vocab.encode_string("Po 0 0 +oo")[:3]:
        state.push(token)
    state.push(vocab.id("n0"))
    state.push(vocab.id("n0"))
    labels = {vocab.tokens[i] for i in state.allowed()}
    assert labels == {l for l in LABELS if l.lstrip("o")[:1] == "+"} and len(labels) == 13
    state.push(vocab.id("o+o"))
    state.push(vocab.id("n0"))
    state.push(vocab.id("n0"))
    later = {l for l in LABELS[LABELS.index("o+o") + 1:] if l.lstrip("o")[:1] == "+"}
    assert {vocab.tokens[i] for i in state.allowed()} == later and "o++" in later and "oo+" not in later


def test_checks_find_the_failure_of_each_sequence(nacl):
    vocab = slices_vocabulary()
    good = vocab.encode_string(Slices().encode(nacl))
    chain = vocab.encode_string("Po 0 0 +oo")
    checked = check_slices_sequences(vocab, [good, chain, good, good[:-3]], [None, None, {"Na": 2, "Cl": 2}, None])
    assert [c.failure for c in checked] == [None, "periodicity", "formula", "parse"]
    assert checked[0].crystal.composition.reduced_formula == "NaCl"


def test_a_slices_model_trained_on_one_crystal_generates_it():
    crystal = make_perovskite("Sr", "Ti", a=3.905)
    torch.manual_seed(0)
    model = AutoregressiveGenerator({"name": "slices-test", "tokenizer": "slices", "task": "gen", "model": TINY,
                                     "training": {"steps": 150, "batch_size": 8, "lr": 0.003, "log_every": 50},
                                     "sampling": {"top_k": 1, "batch_size": 4}})
    assert "spacegroup" not in model.capabilities.conditions
    model.fit_crystals([crystal] * 8, TrainingRun())
    samples = model.sample([Target()], n=2, seed=0)[0]
    assert len(samples) == 2 and all(s.composition == crystal.composition for s in samples)
    assert model.check_counts.as_dict()["valid"] == 2
    from pymatgen.analysis.structure_matcher import StructureMatcher

    assert StructureMatcher(ltol=0.3, stol=0.5, angle_tol=10).fit(samples[0].to_structure(), crystal.to_structure())
    with pytest.raises(CrystalgenInputError, match="cannot condition on a space group"):
        model.sample([Target.parse("SrTiO3", spacegroup=221)])
