"""Padding-free attention equals padded attention, sliding windows included (Gemma 3's local layers)."""
from __future__ import annotations

import pytest
import torch

from distill.attention import register


def _gemma3(window: int):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig
    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=window,
                              layer_types=["sliding_attention", "full_attention"], max_position_embeddings=128,
                              attn_implementation="sdpa")
    return Gemma3ForCausalLM(config).eval()


@pytest.mark.parametrize("lengths", [(9, 7, 3), (4, 12)])
def test_padding_free_logits_equal_padded_ones_with_a_sliding_window_shorter_than_the_examples(lengths):
    model = _gemma3(window=4)
    examples = [torch.randint(0, 97, (n,)) for n in lengths]
    with torch.no_grad():
        padded = [model(input_ids=x[None]).logits[0] for x in examples]  # each example alone: no padding at all
        model.set_attn_implementation(register())
        ids = torch.cat(examples)[None]
        positions = torch.cat([torch.arange(len(x)) for x in examples])[None]
        edges = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
        packed = model(input_ids=ids, position_ids=positions, cu_seq_lens_q=edges, cu_seq_lens_k=edges,
                       max_length_q=max(lengths), max_length_k=max(lengths)).logits[0]
    torch.testing.assert_close(packed, torch.cat(padded), atol=1e-5, rtol=1e-5)


def test_without_a_window_the_segments_run_plain_causal_attention():
    model = _gemma3(window=64)  # longer than every example: the local layer is causal within each
    examples = [torch.randint(0, 97, (n,)) for n in (6, 5)]
    with torch.no_grad():
        padded = torch.cat([model(input_ids=x[None]).logits[0] for x in examples])
        model.set_attn_implementation(register())
        edges = torch.tensor([0, 6, 11], dtype=torch.int32)
        packed = model(input_ids=torch.cat(examples)[None], position_ids=torch.tensor([[*range(6), *range(5)]]),
                       cu_seq_lens_q=edges, cu_seq_lens_k=edges, max_length_q=6, max_length_k=6).logits[0]
    torch.testing.assert_close(packed, padded, atol=1e-5, rtol=1e-5)
