"""Activation checkpointing in TransformerLM (``activation_checkpointing`` = 0 none, 1 every block, k every
k-th): same loss and gradients as without, the chosen blocks run forward again in backward, fewer tensors kept
for backward, and nothing changes in eval, under no_grad or with a KV cache."""

from __future__ import annotations

import copy

import pytest
import torch

from lmfs.nn import TransformerConfig, TransformerLM, cross_entropy

CFG = dict(vocab_size=64, context_length=16, d_model=32, num_layers=4, num_heads=4, d_ff=64)


def _run(every: int) -> tuple[TransformerLM, torch.Tensor, list[int], int]:
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(**CFG, activation_checkpointing=every))
    calls = [0] * len(model.layers)
    for i, layer in enumerate(model.layers):
        layer.register_forward_pre_hook(lambda m, a, i=i: calls.__setitem__(i, calls[i] + 1))
    ids = torch.randint(0, 64, (3, 17), generator=torch.Generator().manual_seed(1))
    saved = [0]

    def pack(t):
        saved[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = cross_entropy(model(ids[:, :-1]).reshape(-1, 64), ids[:, 1:].reshape(-1))
    loss.backward()
    return model, loss.detach(), calls, saved[0]


@pytest.mark.parametrize("every", [1, 2, 3])
def test_same_loss_and_gradients_and_the_chosen_blocks_recompute(every):
    plain, loss0, calls0, saved0 = _run(0)
    ckpt, loss1, calls1, saved1 = _run(every)
    assert torch.equal(loss0, loss1)
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=0, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
    assert calls0 == [1, 1, 1, 1]
    assert calls1 == [2 if i % every == 0 else 1 for i in range(4)]
    assert saved1 < saved0  # what the checkpointed blocks kept for backward is gone


def test_inactive_in_eval_no_grad_and_decoding():
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(**CFG, activation_checkpointing=1))
    ref = copy.deepcopy(model)
    ref.config = TransformerConfig(**CFG)
    ids = torch.randint(0, 64, (2, 8))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), ref(ids), rtol=0, atol=0)
    model.eval()
    ref.eval()
    cache, ref_cache = model.new_kv_cache(2), ref.new_kv_cache(2)
    torch.testing.assert_close(model(ids, kv_cache=cache), ref(ids, kv_cache=ref_cache), rtol=0, atol=0)


def test_bad_values_are_named():
    with pytest.raises(ValueError, match="activation_checkpointing"):
        TransformerConfig(**CFG, activation_checkpointing=-1)


def _profiled_step(every: int) -> tuple[dict, int]:
    """The profiler's memory of one steady-state training step (lmfs AdamW) of a small model, and the bytes of
    the distinct non-parameter storages autograd kept for backward in that configuration."""
    from lmfs.optim import AdamW
    from lmfs.profile.memory import step_peak_memory

    cfg = {**CFG, "context_length": 64}
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(**cfg, activation_checkpointing=every))
    opt = AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, 64, (8, 65), generator=torch.Generator().manual_seed(1))
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def loss_fn():
        return cross_entropy(model(ids[:, :-1]).reshape(-1, 64), ids[:, 1:].reshape(-1))

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        opt.step()

    step()
    seen: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in weights:
            seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn()
    loss.backward()
    return step_peak_memory(step, "cpu"), sum(seen.values())


def test_profiler_measured_peak_falls_with_checkpointing():
    none, saved_none = _profiled_step(0)
    every, saved_every = _profiled_step(1)
    every2, _ = _profiled_step(2)
    # everything kept for backward is allocated in the step and alive together at the end of forward
    assert none["peak_bytes"] >= saved_none > 0
    assert every["peak_bytes"] >= saved_every
    # checkpointing every block keeps only block inputs: the profiler sees most of the saved bytes go
    assert every["peak_bytes"] < none["peak_bytes"] - 0.5 * (saved_none - saved_every)
    assert every["peak_bytes"] < every2["peak_bytes"] < none["peak_bytes"]
    # the gradients the step leaves are the same either way
    assert none["end_bytes"] == every["end_bytes"] == every2["end_bytes"] > 0


def test_report_shows_the_profiler_peak_and_the_time_against_no_checkpointing(tmp_path):
    import json

    from lmfs.parallel.report import section

    def bench(every, median, peak):
        return {"name": f"t[{every}]", "fullname": f"t[{every}]", "group": "actckpt-step-cpu",
                "stats": {"median": median},
                "extra_info": {"activation_checkpointing": every, "profiler_peak_mib": peak, "threads": 1}}

    folder = tmp_path / "bench" / "box"
    folder.mkdir(parents=True)
    old = {"datetime": "2026-01-01T00:00:00", "benchmarks": [bench(0, 9.0, 999.0), bench(1, 9.0, 999.0)]}
    new = {"datetime": "2026-02-01T00:00:00", "load": {"start": [0.5, 0.5, 0.5]},
           "benchmarks": [bench(1, 1.25, 100.0), bench(0, 1.0, 400.0), bench(2, 1.125, 250.0)]}
    (folder / "aaa.json").write_text(json.dumps(old))
    (folder / "bbb.json").write_text(json.dumps(new))
    html = section(tmp_path).html
    assert "999" not in html and "reports/bench/box/bbb.json" in html  # the newest run only
    table = html[html.index("Activation checkpointing"):]
    # rows none, every 2nd, every block: step ms, time vs none, peak MiB, memory vs none
    for cells in (("none", "1000", "400"), ("every 2nd block", "1125", "1.125", "250", "0.625"),
                  ("every block", "1250", "1.25", "100", "0.25")):
        pos = [table.index(f"<td>{c}</td>") for c in cells]
        assert pos == sorted(pos), cells
    assert table.index(">none<") < table.index(">every 2nd block<") < table.index(">every block<")
