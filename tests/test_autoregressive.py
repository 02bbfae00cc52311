"""The autoregressive family: transformer and its cache, the CIF grammar, checks, training and sampling."""

from __future__ import annotations

import pytest
import torch

from crystalgen.errors import CrystalgenInputError
from crystalgen.generators.autoregressive import AutoregressiveGenerator, collate_tokens
from crystalgen.generators.target import Target
from crystalgen.metrics.cif_validity import check_sequence
from crystalgen.models.base import TrainingRun
from crystalgen.nn.transformer import DecoderTransformer, TransformerConfig, sample_next
from crystalgen.representations.cif_grammar import CifDecodingState, groups_for
from crystalgen.representations.cif_tokens import CifTokens, canonicalise
from crystalgen.representations.cif_vocab import vocabulary

from conftest import make_perovskite

TINY = {"dim": 32, "layers": 2, "heads": 2, "max_len": 160}


def test_cached_decoding_gives_the_logits_of_a_full_forward_pass():
    torch.manual_seed(0)
    net = DecoderTransformer(TransformerConfig(vocab_size=50, max_len=32, dim=32, layers=2, heads=4)).eval()
    ids = torch.randint(0, 50, (3, 12))
    full = net(ids)
    cache = net.new_cache()
    stepped = torch.cat([net(ids[:, i:i + 1], cache) for i in range(ids.shape[1])], dim=1)
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=1e-5)
    prompt_then_step = torch.cat([net(ids[:, :5], cache := net.new_cache()), net(ids[:, 5:6], cache)], dim=1)
    torch.testing.assert_close(prompt_then_step, full[:, :6], atol=1e-5, rtol=1e-5)


def test_a_sequence_longer_than_the_model_is_refused():
    net = DecoderTransformer(TransformerConfig(vocab_size=10, max_len=4, dim=8, layers=1, heads=2))
    with pytest.raises(ValueError, match="longer than"):
        net(torch.zeros(1, 5, dtype=torch.long))


def test_sampling_never_leaves_the_allowed_tokens():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 20)
    allowed = torch.zeros(64, 20, dtype=torch.bool)
    allowed[:, [3, 7]] = True
    allowed[0] = False
    allowed[0, 11] = True
    for top_k in (None, 1, 5):
        tokens = sample_next(logits, allowed, 0.7, top_k, generator)
        assert tokens[0] == 11 and set(tokens[1:].tolist()) <= {3, 7}


def test_the_grammar_accepts_every_canonical_encoding(any_crystal):
    tokens = CifTokens()
    ids = tokens.encode(any_crystal)
    state = CifDecodingState(tokens.vocabulary, ids[:1])
    for token in ids:
        assert token in state.allowed()
        state.push(token)
    assert state.finished


def test_the_grammar_forces_the_composition_and_the_family_cell(srtio3):
    vocab = vocabulary()
    model = AutoregressiveGenerator({"name": "t", "model": TINY})
    state = CifDecodingState(vocab, model.prompt(Target.parse("SrTiO3", spacegroup=221)))
    generator = torch.Generator().manual_seed(1)
    while not state.finished:  # random choices among what the grammar allows
        allowed = state.allowed()
        state.push(allowed[int(torch.randint(len(allowed), (1,), generator=generator))])
    cif = vocab.decode(state.tokens)
    assert dict(cif.formula) == {"Sr": 1, "Ti": 1, "O": 3} and cif.spacegroup == 221
    assert len(set(cif.cell[:3])) == 1 and cif.cell[3:] == (90.0, 90.0, 90.0)
    placed = {}
    for site in cif.sites:
        placed[site.element] = placed.get(site.element, 0) + site.multiplicity
    assert placed == {"Sr": 1, "Ti": 1, "O": 3}
    assert 14 not in groups_for((1, 1, 3)) and 225 in groups_for((1, 1, 3))  # P2_1/c has no 1-fold site


def test_checks_name_the_first_failure(nacl, srtio3):
    import dataclasses

    vocab = vocabulary()
    good = canonicalise(nacl)
    assert check_sequence(vocab, vocab.encode(good), {"Na": 1, "Cl": 1}).crystal is not None
    assert check_sequence(vocab, vocab.encode(good), {"Na": 2, "Cl": 2}).failure == "formula"
    in_p1 = dataclasses.replace(good, spacegroup=1, formula=(("Na", 4), ("Cl", 4)), sites=tuple(
        dataclasses.replace(good.sites[i], multiplicity=1, frac=f) for i, f in
        ((0, (0, 0, 0)), (0, (0, .5, .5)), (0, (.5, 0, .5)), (0, (.5, .5, 0)),
         (1, (.5, .5, .5)), (1, (.5, 0, 0)), (1, (0, .5, 0)), (1, (0, 0, .5)))))
    assert check_sequence(vocab, vocab.encode(in_p1)).failure == "spacegroup"
    squashed = dataclasses.replace(canonicalise(srtio3), cell=(70.0, 70.0, 70.0, 90.0, 90.0, 90.0))
    assert check_sequence(vocab, vocab.encode(squashed)).failure == "cell-sanity"
    assert check_sequence(vocab, vocab.encode(good)[:15]).failure == "parse"


def _overfitted(crystal, steps: int = 150) -> AutoregressiveGenerator:
    torch.manual_seed(0)
    model = AutoregressiveGenerator({"name": "ar-test", "model": TINY,
                                     "training": {"steps": steps, "batch_size": 8, "lr": 0.003, "log_every": 50},
                                     "sampling": {"top_k": 1, "batch_size": 4}})
    model.fit_crystals([crystal] * 8, TrainingRun())
    return model


@pytest.fixture(scope="module")
def overfitted():
    return _overfitted(make_perovskite("Sr", "Ti", a=3.905))


def test_training_on_one_crystal_lets_greedy_decoding_rebuild_it(overfitted, same_crystal):
    crystal = make_perovskite("Sr", "Ti", a=3.905)
    samples = overfitted.sample([Target.from_crystal(crystal)], n=2, seed=0)[0]
    assert len(samples) == 2 and all(same_crystal(s, crystal) for s in samples)
    assert samples[0].properties["spacegroup.number"] == 221
    assert overfitted.training_summary["last_losses"]["loss"] < 0.5


def test_samples_have_the_prompted_composition_and_failures_are_counted(overfitted):
    before = overfitted.check_counts.total
    targets = [Target.parse("BaZrO3"), Target.parse("Mg2O2"), Target.parse("KNbO3", spacegroup=99)]
    out = overfitted.sample(targets, n=3, seed=1, options=overfitted_options(temperature=1.5))
    assert overfitted.check_counts.total - before == 9
    for target, samples in zip(targets, out):
        assert all(s.composition == target.composition for s in samples)
    assert all(s.properties["spacegroup.number"] == 99 for s in out[2])


def overfitted_options(**settings):
    from crystalgen.generators.options import SampleOptions

    return SampleOptions(**settings)


def test_the_cache_does_not_change_what_is_decoded(overfitted):
    from dataclasses import replace

    target = [Target.parse("SrTiO3")]
    cached = overfitted.sample(target, n=2, seed=3, options=overfitted_options(temperature=2.0))
    overfitted.decoding = replace(overfitted.decoding, use_cache=False)
    try:
        uncached = overfitted.sample(target, n=2, seed=3, options=overfitted_options(temperature=2.0))
    finally:
        overfitted.decoding = replace(overfitted.decoding, use_cache=True)
    assert [c.frac_coords.tolist() for c in cached[0]] == [c.frac_coords.tolist() for c in uncached[0]]


def test_checkpoints_round_trip_and_bad_settings_are_one_line_errors(overfitted, tmp_path):
    from crystalgen.models import load_model, save_model

    save_model(overfitted, tmp_path / "ar", "card")
    loaded = load_model(tmp_path / "ar")
    target = [Target.parse("SrTiO3")]
    assert [c.lattice.tolist() for c in loaded.sample(target, n=1)[0]] == \
        [c.lattice.tolist() for c in overfitted.sample(target, n=1)[0]]
    with pytest.raises(CrystalgenInputError, match="unknown tokenizer"):
        AutoregressiveGenerator({"name": "x", "tokenizer": "bpe"})
    with pytest.raises(CrystalgenInputError, match="unknown model settings"):
        AutoregressiveGenerator({"name": "x", "model": {"width": 3}})


def test_batches_pad_with_the_pad_token():
    batch = collate_tokens([torch.tensor([2, 5, 6]), torch.tensor([2, 7])])
    assert batch.ids.tolist() == [[2, 5, 6], [2, 7, vocabulary().id("<pad>")]]


def test_generation_from_scratch_samples_the_formula_within_an_element_set(overfitted, same_crystal):
    free = overfitted.sample([Target()], n=2, seed=0)[0]
    assert free and all(same_crystal(c, make_perovskite("Sr", "Ti", a=3.905)) for c in free)
    within = overfitted.sample([Target.parse(elements="Ba-Zr-O")], n=4, seed=0,
                               options=overfitted_options(temperature=1.5))[0]
    state = CifDecodingState(vocabulary(), [vocabulary().id("data_")], frozenset({"Ba", "O"}))
    state.push(vocabulary().id("data_"))
    assert {vocabulary().tokens[i] for i in state.allowed()} == {"Ba", "O"}
    assert all({el.symbol for el in c.composition} <= {"Ba", "Zr", "O"} for c in within)
    with pytest.raises(CrystalgenInputError, match="only with a composition"):
        overfitted.sample([Target(spacegroup=221)])


def test_training_can_continue_from_a_saved_checkpoint(overfitted, tmp_path):
    from crystalgen.models import save_model

    save_model(overfitted, tmp_path / "first", "card")
    crystal = make_perovskite("Sr", "Ti", a=3.905)
    second = AutoregressiveGenerator({"name": "ar-second", "model": TINY, "init_from": str(tmp_path / "first"),
                                      "training": {"steps": 1, "batch_size": 8, "lr": 1e-9}})
    second.fit_crystals([crystal] * 8, TrainingRun())
    first_weights = overfitted.model.state_dict()
    for key, value in second.model.state_dict().items():
        torch.testing.assert_close(value, first_weights[key], atol=1e-6, rtol=0)
    with pytest.raises(CrystalgenInputError, match="do not match its config"):
        AutoregressiveGenerator({"name": "x", "model": {**TINY, "dim": 16}, "init_from": str(tmp_path / "first"),
                                 "training": {"steps": 1}}).fit_crystals([crystal], TrainingRun())


def test_several_draws_per_sample_keep_the_first_or_the_most_likely_valid_ones(overfitted):
    from dataclasses import replace

    target = [Target.parse("SrTiO3")]
    hot = overfitted_options(temperature=1.5)
    greedy = overfitted.decoding
    overfitted.decoding = replace(greedy, top_k=0)  # the fixture decodes greedily
    sequences, scores = overfitted.decode(target * 6, torch.Generator().manual_seed(0), hot, torch.device("cpu"))
    assert len(scores) == 6 and all(s <= 0 for s in scores) and len(set(scores)) > 1
    before = overfitted.check_counts.total
    picked = {}
    for pick in ("most-likely", "first-valid"):  # one batch, as decoded above
        overfitted.decoding = replace(greedy, top_k=0, candidates=6, batch_size=8, pick=pick)
        try:
            picked[pick] = overfitted.sample(target, n=1, seed=0, options=hot)[0]
        finally:
            overfitted.decoding = greedy
    best = picked["most-likely"]
    assert overfitted.check_counts.total - before == 12 and len(best) == 1
    # the kept one is the most likely of the same six draws that passed the checks
    checks = overfitted.tokenizer.check(sequences, [{"Sr": 1, "Ti": 1, "O": 3}] * 6)
    valid = [(s, c.crystal) for s, c in zip(scores, checks) if c.crystal is not None]
    assert best[0].frac_coords.tolist() == max(valid, key=lambda v: v[0])[1].frac_coords.tolist()
    assert picked["first-valid"][0].frac_coords.tolist() == valid[0][1].frac_coords.tolist()
    with pytest.raises(CrystalgenInputError, match="candidates"):
        AutoregressiveGenerator({"name": "x", "sampling": {"candidates": 0}})
    with pytest.raises(CrystalgenInputError, match="pick"):
        AutoregressiveGenerator({"name": "x", "sampling": {"pick": "best"}})
