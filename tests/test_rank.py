"""Ranking: combination arithmetic, diversity, IFD on a tiny Llama against a hand calculation, approve top K."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from curation.errors import ConfigError
from curation.rank import (RankConfig, approve_top, combined, difficulty_from_ifd, diversity_for_rows, diversity_scores,
                           minmax, pending_rows, rank, rank_rows)
from models.ifd import ifd_from_losses, ifd_scores
from tests.test_filters import add_scores, make_rows

nan = float("nan")
WORDS = "the cat sat on a mat dog ran far away why did it and then slept".split()


def test_combined_normalises_each_score_and_averages_what_a_row_has():
    scores = {"judge": np.array([2.0, 6.0, 10.0, nan]), "diversity": np.array([0.5, nan, 0.1, 0.3])}
    # judge -> [0, .5, 1, nan]; diversity -> [1, nan, 0, .5]; weights 3 and 1
    got = combined(scores, {"judge": 3, "diversity": 1})
    np.testing.assert_allclose(got, [(3 * 0 + 1 * 1) / 4, 0.5, (3 * 1 + 0) / 4, 0.5])
    assert np.isnan(combined({"judge": np.array([nan, 1.0])}, {"judge": 1})[0])
    np.testing.assert_array_equal(minmax(np.array([4.0, 4.0, nan])), [0.5, 0.5, nan])
    with pytest.raises(ConfigError, match=r"no scores named \['difficulty'\]"):
        combined(scores, {"difficulty": 1})
    with pytest.raises(ConfigError, match="at least one score"):
        RankConfig(judge=0)
    with pytest.raises(ConfigError, match="diversity weight must be a number ≥ 0"):
        RankConfig(diversity=-1)


def test_rank_orders_best_first_ties_by_id_and_unscored_last():
    ranking = rank([10, 11, 12, 13], {"judge": np.array([5.0, nan, 9.0, 5.0])}, {"judge": 1})
    assert ranking.ids.tolist() == [12, 10, 13, 11]
    np.testing.assert_array_equal(ranking.components["judge"], [9.0, 5.0, 5.0, nan])
    assert ranking.top(k=10).tolist() == [12, 10, 13]  # never the unscored row
    assert ranking.top(fraction=0.5).tolist() == [12, 10]  # ceil(0.5 * 3 scored)
    with pytest.raises(ConfigError, match="either k .* or fraction"):
        ranking.top(k=1, fraction=0.5)


def test_diversity_is_one_minus_the_nearest_approved_cosine():
    approved = np.array([[1.0, 0.0], [0.0, 2.0]])
    candidates = np.array([[3.0, 0.0], [1.0, 1.0], [-1.0, 0.0]])
    np.testing.assert_allclose(diversity_scores(candidates, approved), [0.0, 1 - math.sqrt(0.5), 1.0], atol=1e-6)
    np.testing.assert_array_equal(diversity_scores(candidates, np.zeros((0, 2))), [1.0, 1.0, 1.0])
    with pytest.raises(ConfigError, match="same model"):
        diversity_scores(candidates, np.ones((1, 3)))


def test_diversity_from_stored_embeddings_against_approved_rows(store):
    ids = make_rows(store, [{"response": f"answer {i}"} for i in range(4)])
    store.set_label([ids[0]], "approved")
    _, stale = store.items_to_embed("response", "toy")
    embedded = stale[:3]  # the last row has no vector yet
    store.put_embeddings("response", "toy", [i for i, _, _ in embedded], [h for _, _, h in embedded],
                         np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]], dtype=np.float32))
    np.testing.assert_allclose(diversity_for_rows(store, pending_rows(store), "toy"), [0.0, 1.0, nan], atol=1e-6)


def test_ifd_pure_helpers():
    assert ifd_from_losses([1.0, 3.0], [4.0, 4.0]) == 0.5
    assert math.isnan(ifd_from_losses([], [1.0]))
    np.testing.assert_array_equal(difficulty_from_ifd(np.array([0.4, 1.2, nan])), [0.4, 0.0, nan])


def _tiny_tokenizer(with_bos: bool) -> PreTrainedTokenizerFast:
    vocab = {"[PAD]": 0, "[UNK]": 1, "[BOS]": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   bos_token="[BOS]" if with_bos else None)


def _tiny_model(vocab_size: int) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def _hand_mean_loss(model, ids: list[int], first_scored: int) -> float:
    """Mean of -log p(ids[p] | ids[:p]) for p >= first_scored, straight from log_softmax."""
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), dim=-1)
    return float(np.mean([-logp[p - 1, ids[p]].item() for p in range(first_scored, len(ids))]))


@pytest.mark.parametrize("with_bos", [True, False])
def test_ifd_on_a_tiny_llama_matches_a_hand_calculation(with_bos):
    tokenizer = _tiny_tokenizer(with_bos)
    model = _tiny_model(len(WORDS) + 3)
    pairs = [("why did the cat sit", "the cat sat on a mat"),
             ("then", "dog ran far away and then slept"),
             ("the dog ran and the cat ran and the cat slept", "it slept"),
             ("why", "")]
    got = ifd_scores(model, tokenizer, pairs, batch_size=3)  # batches mix lengths: padding is exercised
    for (instruction, response), value in zip(pairs[:3], got[:3]):
        prompt = tokenizer(instruction + "\n", add_special_tokens=False)["input_ids"]
        answer = tokenizer(response, add_special_tokens=False)["input_ids"]
        prefix = [tokenizer.bos_token_id] if with_bos else []
        skip = 0 if with_bos else 1  # without BOS the first response token is scored in neither pass
        cond = _hand_mean_loss(model, prompt + answer, len(prompt) + skip)
        plain = _hand_mean_loss(model, prefix + answer, len(prefix) + skip)
        assert value == pytest.approx(cond / plain, rel=1e-4)
    assert math.isnan(got[3])


def test_rank_rows_needs_the_scores_it_weights(store):
    ids = make_rows(store, [{}, {}])
    add_scores(store, {ids[0]: [4.0], ids[1]: [9.0]})
    rows = pending_rows(store)
    assert rank_rows(rows, RankConfig()).ids.tolist() == [ids[1], ids[0]]
    ranking = rank_rows(rows, RankConfig(judge=1, diversity=3), diversity=np.array([1.0, 0.0]))
    assert ranking.ids.tolist() == [ids[0], ids[1]]
    with pytest.raises(ConfigError, match="difficulty has weight 1 but no scores"):
        rank_rows(rows, RankConfig(difficulty=1))


def test_approve_top_k_and_top_fraction_in_one_undoable_batch(store):
    ids = make_rows(store, [{} for _ in range(10)])
    add_scores(store, {g: [float(i)] for i, g in enumerate(ids[:8])})  # the last two are unjudged
    ranking = rank_rows(pending_rows(store), RankConfig())
    batch = approve_top(store, ranking, k=3)
    assert store.stats()["by_status"]["approved"] == 3
    assert {store.generation(g)["review_status"] for g in ids[5:8]} == {"approved"}
    store.undo_batch(batch)
    assert store.stats()["by_status"]["approved"] == 0
    approve_top(store, ranking, fraction=0.25)  # ceil(0.25 * 8 scored rows) = 2
    assert [store.generation(g)["review_status"] for g in ids[6:]] == ["approved", "approved", "pending", "pending"]
    assert len(pending_rows(store)) == 8
