"""Padding-free attention without flash-attention: SDPA run segment by segment.

A padding-free batch is one sequence of several examples with position ids restarting at each. With
flash-attention (CUDA + the flash-attn package) the varlen kernel keeps every example to itself. Plain
SDPA instead gets one block-diagonal [T, T] mask: it computes attention across every pair of examples
only to mask it away (work grows with T², not with the sum of the examples' squares) and, on CPU, the
mask costs memory in every layer. `segmented_sdpa` runs causal SDPA once per example, using the
sequence boundaries TRL's padding-free collator passes down (cu_seq_lens_q / cu_seq_lens_k): exact,
no mask, no wasted blocks. Any call without those boundaries is plain SDPA.

Sliding windows (Mistral, Qwen2 with a window, Gemma 2/3's local layers): transformers applies them through
the mask, so an example longer than its layer's window gets a causal mask limited to the window
(query i sees keys j with i - window < j <= i), the same mask transformers builds for the padded batch;
shorter examples need none. The boundaries are read to the host once per forward pass, not once per layer
(they are the same tensors in every layer), so CUDA does not sync in every layer.
"""
from __future__ import annotations

NAME = "sdpa_segments"
_BOUNDARY_KWARGS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k", "seq_idx")


def segmented_sdpa(module, query, key, value, attention_mask, **kwargs):
    """transformers attention function. query [1, H, T, D], key/value [1, Hkv, T, D] → ([1, T, H, D], None)."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    bounds_q, bounds_k = kwargs.get("cu_seq_lens_q"), kwargs.get("cu_seq_lens_k")
    plain = {k: v for k, v in kwargs.items() if k not in _BOUNDARY_KWARGS}
    edges = _edges(bounds_q) if bounds_q is not None and bounds_k is not None else None
    packed = (edges is not None and query.shape[0] == 1 and query.shape[2] == key.shape[2] == edges[-1]
              and (bounds_k is bounds_q or _edges(bounds_k) == edges))
    if not packed:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **plain)
    window = kwargs.get("sliding_window") or getattr(module, "sliding_window", None)
    pieces = []
    for s, e in zip(edges, edges[1:]):
        if e <= s:
            continue
        mask = _window_mask(e - s, int(window), query.device) if window and e - s > window else None
        pieces.append(sdpa_attention_forward(module, query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], mask,
                                             **{**plain, "is_causal": mask is None})[0])
    return torch.cat(pieces, dim=1), None


def _edges(bounds) -> list[int]:
    """The boundaries as ints, read once per tensor: every layer of one forward pass gets the same tensor."""
    edges = getattr(bounds, "_segment_edges", None)
    if edges is None:
        edges = [int(b) for b in bounds.tolist()]
        bounds._segment_edges = edges
    return edges


def _window_mask(length: int, window: int, device):
    """[1, 1, L, L] bool, True where query i may see key j: causal and i - j < window."""
    import torch
    i = torch.arange(length, device=device)
    distance = i[:, None] - i[None, :]
    return ((distance >= 0) & (distance < window))[None, None]


def register() -> str:
    """Make NAME a transformers attention implementation (idempotent); returns NAME."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(NAME, segmented_sdpa)
    # The masks of calls without boundaries (e.g. generation) are SDPA's.
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME


def use_segments(model) -> bool:
    """Switch a model that would run SDPA to `segmented_sdpa`; False (unchanged) for any other kernel,
    e.g. flash-attention, whose varlen path already keeps examples apart."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    model.set_attn_implementation(register())
    return True
