"""The GGUF Llama loader: rotary-layout algebra (fast) and SmolLM2-135M end to end (slow)."""

from __future__ import annotations

import pytest
import torch

from lmfs.nn import RotaryEmbedding
from lmfs.nn.llama_loader import hf_to_interleaved_rows
from tests.nn.llama_reference import rotate_half, unpermute


def test_row_permutation_turns_half_split_rope_into_interleaved():
    """q·k under HF rotate_half RoPE with HF rows = q·k under interleaved RoPE with permuted rows."""
    g = torch.Generator().manual_seed(0)
    n_heads, d_head, d_in, T, theta = 2, 8, 5, 7, 10000.0
    wq, wk, x = (
        torch.randn(n_heads * d_head, d_in, generator=g),
        torch.randn(n_heads * d_head, d_in, generator=g),
        torch.randn(T, d_in, generator=g),
    )

    def hf_scores(wq, wk):
        inv = 1.0 / theta ** (torch.arange(0, d_head, 2, dtype=torch.float64) / d_head)
        emb = torch.cat([torch.outer(torch.arange(T, dtype=torch.float64), inv)] * 2, dim=-1).float()
        q, k = (
            (x @ wq.T).view(T, n_heads, d_head).transpose(0, 1),
            (x @ wk.T).view(T, n_heads, d_head).transpose(0, 1),
        )
        q, k = q * emb.cos() + rotate_half(q) * emb.sin(), k * emb.cos() + rotate_half(k) * emb.sin()
        return q @ k.transpose(-1, -2)

    def lmfs_scores(wq, wk):
        rope = RotaryEmbedding(theta, d_head, T)
        q, k = (
            (x @ wq.T).view(T, n_heads, d_head).transpose(0, 1),
            (x @ wk.T).view(T, n_heads, d_head).transpose(0, 1),
        )
        return rope(q) @ rope(k).transpose(-1, -2)

    pq, pk = hf_to_interleaved_rows(wq, n_heads), hf_to_interleaved_rows(wk, n_heads)
    torch.testing.assert_close(lmfs_scores(pq, pk), hf_scores(wq, wk), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(unpermute(pq, n_heads), wq)  # the test's inverse really inverts it
    assert not torch.allclose(lmfs_scores(wq, wk), hf_scores(wq, wk), atol=1e-2)  # the permutation matters


def _smollm2():
    pytest.importorskip("gguf")
    from lmfs.nn.llama_loader import find_smollm2_gguf

    try:
        return find_smollm2_gguf()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def test_smollm2_config_from_metadata():
    from lmfs.nn.llama_loader import config_from_gguf, read_gguf

    ckpt = read_gguf(_smollm2(), load_tensors=False)
    ckpt.tensors["token_embd.weight"] = None  # presence only; tied embeddings = no output.weight
    cfg = config_from_gguf(ckpt, context_length=512)
    assert (cfg.d_model, cfg.num_layers, cfg.num_heads, cfg.kv_heads, cfg.d_ff) == (576, 30, 9, 3, 1536)
    assert cfg.rope_theta == 100000.0 and cfg.tie_embeddings and cfg.vocab_size == 49152
    assert cfg.eps == pytest.approx(1e-5) and cfg.context_length == 512


@pytest.fixture(scope="module")
def smollm2():
    from lmfs.nn.llama_loader import gguf_tokenizer_data, load_llama_gguf
    from lmfs.tokenizer.tokenizer import Tokenizer

    torch.set_num_threads(2)
    path = _smollm2()
    model, ckpt = load_llama_gguf(path, context_length=256)
    vocab, merges, specials = gguf_tokenizer_data(ckpt)
    return model, Tokenizer(vocab, merges, specials), path


@pytest.mark.slow
def test_smollm2_logits_match_reference_forward(smollm2):
    from tests.nn.llama_reference import llama_forward, read_tensors

    model, tok, path = smollm2
    ids = torch.tensor([tok.encode("Once upon a time, there was a little")])
    tensors, meta = read_tensors(path)
    expected = llama_forward(tensors, meta, ids)
    del tensors
    with torch.no_grad():
        got = model(ids)
    assert model.lm_head.weight is model.token_embeddings.weight  # tied
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=2e-3)
    assert torch.equal(got.argmax(-1), expected.argmax(-1))


@pytest.mark.slow
def test_smollm2_greedy_generation_is_coherent(smollm2):
    model, tok, _ = smollm2
    prompt = "The capital of France is"
    ids = torch.tensor([tok.encode(prompt)])
    with torch.no_grad():
        for _ in range(8):
            nxt = model(ids)[0, -1].argmax()
            ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
    text = tok.decode(ids[0].tolist())
    assert text.startswith(prompt)
    assert "Paris" in text[len(prompt) :], text
    # the KV-cached generation loop continues the same way
    from lmfs.generate.sampling import generate_tokens

    n = len(tok.encode(prompt))
    cached = generate_tokens(
        model, ids[0, :n].tolist(), 8, context_length=model.config.context_length, temperature=0
    )
    assert list(cached) == ids[0, n:].tolist()


@pytest.mark.slow
def test_smollm2_tokenizer_data_matches_hf_tokenizers(smollm2):
    """lmfs's Tokenizer on the GGUF vocab/merges encodes like HF tokenizers' byte-level BPE built from the same file."""
    tokenizers = pytest.importorskip("tokenizers")
    from lmfs.nn.llama_loader import read_gguf

    _, tok, path = smollm2
    fields = read_gguf(path, load_tensors=False).reader.fields
    tokens = fields["tokenizer.ggml.tokens"].contents()
    merges = [tuple(m.split(" ")) for m in fields["tokenizer.ggml.merges"].contents()]
    hf = tokenizers.Tokenizer(
        tokenizers.models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges)
    )
    hf.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    for text in (
        "The capital of France is",
        "Hello, world! It's a fine day; isn't it?",
        "  naïve café\n\nend",
    ):
        assert tok.encode(text) == hf.encode(text).ids, text


def _synthetic_gguf(n_layers=2, d=32, heads=4, kv=2, d_ff=48, vocab=61, tied=False, seed=0):
    """Random tensors under GGUF Llama names (numpy, (out, in)) and the metadata the reference reads."""
    import numpy as np

    rng = np.random.default_rng(seed)
    r = lambda *shape, s=1.0: (rng.standard_normal(shape) * s).astype(np.float32)
    dh = d // heads
    t = {"token_embd.weight": r(vocab, d), "output_norm.weight": 1 + r(d, s=0.1)}
    if not tied:
        t["output.weight"] = r(vocab, d, s=d**-0.5)
    for i in range(n_layers):
        b = f"blk.{i}."
        t[b + "attn_q.weight"] = r(heads * dh, d, s=d**-0.5)
        t[b + "attn_k.weight"] = r(kv * dh, d, s=d**-0.5)
        t[b + "attn_v.weight"] = r(kv * dh, d, s=d**-0.5)
        t[b + "attn_output.weight"] = r(d, heads * dh, s=d**-0.5)
        t[b + "attn_norm.weight"] = 1 + r(d, s=0.1)
        t[b + "ffn_norm.weight"] = 1 + r(d, s=0.1)
        t[b + "ffn_gate.weight"] = r(d_ff, d, s=d**-0.5)
        t[b + "ffn_up.weight"] = r(d_ff, d, s=d**-0.5)
        t[b + "ffn_down.weight"] = r(d, d_ff, s=d_ff**-0.5)
    meta = {
        "general.architecture": "llama",
        "llama.block_count": n_layers,
        "llama.context_length": 64,
        "llama.embedding_length": d,
        "llama.feed_forward_length": d_ff,
        "llama.attention.head_count": heads,
        "llama.attention.head_count_kv": kv,
        "llama.rope.freq_base": 5000.0,
        "llama.attention.layer_norm_rms_epsilon": 1e-5,
        "llama.vocab_size": vocab,
    }
    return t, meta


@pytest.mark.parametrize("tied", [False, True])
def test_gguf_mapping_matches_reference_forward_on_synthetic_weights(tied):
    """The GGUF → lmfs mapping (names, fused QKV, GQA, tying, interleaved RoPE rows) on random weights, no file."""
    from lmfs.nn import TransformerLM
    from lmfs.nn.llama_loader import GGUFCheckpoint, config_from_gguf, gguf_to_lmfs_state_dict
    from tests.nn.llama_reference import llama_forward

    tensors, meta = _synthetic_gguf(tied=tied)
    cfg = config_from_gguf(GGUFCheckpoint(path="synthetic", metadata=meta, tensors=tensors))
    assert cfg.tie_embeddings is tied and cfg.kv_heads == 2 and cfg.rope_theta == 5000.0
    model = TransformerLM(cfg)
    if tied:
        assert model.lm_head.weight is model.token_embeddings.weight
    model.load_state_dict(gguf_to_lmfs_state_dict(tensors, cfg.num_layers, tied))
    ids = torch.randint(0, 61, (2, 20), generator=torch.Generator().manual_seed(0))
    expected = llama_forward({k: torch.from_numpy(v) for k, v in tensors.items()}, meta, ids)
    with torch.no_grad():
        torch.testing.assert_close(model(ids), expected, rtol=1e-4, atol=1e-4)


def test_gguf_mapping_names_a_missing_tensor():
    from lmfs.nn.llama_loader import gguf_to_lmfs_state_dict

    tensors, _ = _synthetic_gguf()
    del tensors["blk.1.ffn_up.weight"]
    with pytest.raises(KeyError, match=r"blk\.1\.ffn_up\.weight.*Llama-architecture"):
        gguf_to_lmfs_state_dict(tensors, 2, tied=False)


def test_non_llama_architecture_is_refused():
    from lmfs.nn.llama_loader import GGUFCheckpoint, config_from_gguf

    _, meta = _synthetic_gguf()
    meta["general.architecture"] = "gpt2"
    with pytest.raises(ValueError, match="only 'llama'"):
        config_from_gguf(GGUFCheckpoint(path="x.gguf", metadata=meta, tensors={}))
