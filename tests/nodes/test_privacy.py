"""Ghost norms against a naive per-sample reference (one backward per sample), and the DP-SGD step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from frugalml.errors import ModelError
from frugalml.models.ngram_bag import NgramBagClassifier
from frugalml.nodes.privacy import GhostNorms, dp_sgd_step


def naive_norms(module: nn.Module, forward_one, targets: torch.Tensor) -> torch.Tensor:
    norms = []
    for i in range(len(targets)):
        module.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(forward_one(i).float(), targets[i : i + 1], reduction="sum").backward()
        norms.append(torch.sqrt(sum((p.grad.float() ** 2).sum() for p in module.parameters() if p.grad is not None)))
    return torch.stack(norms)


def bag_batch(seed: int, n: int, buckets: int, with_duplicates: bool):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 9, (n,), generator=generator)
    lengths[0] = 0 if n > 2 else lengths[0]  # an empty bag
    # unique buckets within each bag (what csr_to_bags produces), unless duplicates are asked for
    indices = torch.cat([torch.randperm(buckets, generator=generator)[: int(k)] for k in lengths])
    if with_duplicates and len(indices) > 3:
        indices[1] = indices[2]  # a bucket twice in one bag (or across bags)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
    weights = torch.rand(len(indices), generator=generator)
    return indices, offsets, weights, lengths


def slice_bag(indices, offsets, weights, lengths, i):
    start, length = int(offsets[i]), int(lengths[i])
    return indices[start : start + length], torch.zeros(1, dtype=torch.long), weights[start : start + length]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("hidden", [0, 8])
@pytest.mark.parametrize("with_duplicates", [False, True])
def test_ngram_bag_ghost_norms_match_per_sample_reference(seed, hidden, with_duplicates):
    torch.manual_seed(seed)
    model = NgramBagClassifier(50, 6, 3, hidden_dim=hidden)
    model.embedding.frugalml_unique_per_bag = not with_duplicates  # duplicates take the general path
    indices, offsets, weights, lengths = bag_batch(seed, 7, 50, with_duplicates)
    targets = torch.randint(0, 3, (7,), generator=torch.Generator().manual_seed(seed))
    with GhostNorms(model) as ghost:
        nn.functional.cross_entropy(model(indices, offsets, weights), targets, reduction="sum").backward()
    reference = naive_norms(model, lambda i: model(*slice_bag(indices, offsets, weights, lengths, i)), targets)
    torch.testing.assert_close(ghost.norms(), reference, rtol=1e-4, atol=1e-6)


def test_embedding_bag_mean_mode_and_embedding_layer():
    torch.manual_seed(0)

    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = nn.Embedding(20, 5)
            self.norm = nn.LayerNorm(5)
            self.out = nn.Linear(5, 2)

        def forward(self, ids):
            return self.out(self.norm(self.embedding(ids)).mean(dim=1))

    model = Tokens()
    ids = torch.randint(0, 20, (6, 4))
    ids[0, 1] = ids[0, 2]  # repeated token within a sample
    targets = torch.randint(0, 2, (6,))
    with GhostNorms(model) as ghost:
        nn.functional.cross_entropy(model(ids), targets, reduction="sum").backward()
    torch.testing.assert_close(
        ghost.norms(), naive_norms(model, lambda i: model(ids[i : i + 1]), targets), rtol=1e-4, atol=1e-6
    )

    bag = nn.EmbeddingBag(30, 4, mode="mean")
    head = nn.Linear(4, 2)
    model = nn.ModuleDict({"bag": bag, "head": head})
    indices, offsets, _, lengths = bag_batch(3, 5, 30, True)
    lengths[0] = 2  # mean of an empty bag has no gradient path worth testing; keep bags non-empty
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
    indices = torch.randint(0, 30, (int(lengths.sum()),))
    run = lambda idx, off: head(bag(idx, off))  # noqa: E731
    targets = torch.randint(0, 2, (5,))
    with GhostNorms(model) as ghost:
        nn.functional.cross_entropy(run(indices, offsets), targets, reduction="sum").backward()
    reference = naive_norms(
        model,
        lambda i: run(indices[int(offsets[i]) : int(offsets[i]) + int(lengths[i])], torch.zeros(1, dtype=torch.long)),
        targets,
    )
    torch.testing.assert_close(ghost.norms(), reference, rtol=1e-4, atol=1e-6)


def test_unsupported_layers_are_refused():
    with pytest.raises(ModelError, match="Conv1d"):
        GhostNorms(nn.Sequential(nn.Conv1d(2, 2, 3)))
    with pytest.raises(ModelError, match="mode 'max'"):
        GhostNorms(nn.EmbeddingBag(5, 2, mode="max"))


def test_dp_step_without_noise_equals_the_mean_of_clipped_per_sample_gradients():
    torch.manual_seed(0)
    model = NgramBagClassifier(40, 4, 2, hidden_dim=4)
    model.embedding.frugalml_unique_per_bag = False
    indices, offsets, weights, lengths = bag_batch(5, 8, 40, True)
    targets = torch.randint(0, 2, (8,))
    clip = 0.05
    # reference: clip each sample's gradient, sum, divide by the expected batch size
    expected = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for i in range(8):
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(
            model(*slice_bag(indices, offsets, weights, lengths, i)), targets[i : i + 1]
        ).backward()
        norm = torch.sqrt(sum((p.grad**2).sum() for p in model.parameters()))
        for name, p in model.named_parameters():
            expected[name] += p.grad * min(1.0, clip / (float(norm) + 1e-6))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    stats = dp_sgd_step(model, optimizer, lambda: model(indices, offsets, weights), targets,
                        max_grad_norm=clip, noise_multiplier=0.0, expected_batch_size=8.0)  # fmt: skip
    for name, p in model.named_parameters():
        torch.testing.assert_close(before[name] - p.detach(), expected[name] / 8.0, rtol=1e-4, atol=1e-7)
    assert 0.0 < stats["clipped_share"] <= 1.0


def test_dp_step_adds_seeded_noise_of_the_right_scale():
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    x, y = torch.zeros(1, 3), torch.zeros(1, dtype=torch.long)
    updates = []
    for _ in range(2):
        with torch.no_grad():
            model.weight.zero_()
            model.bias.zero_()
        dp_sgd_step(model, optimizer, lambda: model(x), y[:0], max_grad_norm=2.0, noise_multiplier=3.0,
                    expected_batch_size=1.0, generator=torch.Generator().manual_seed(7))  # fmt: skip
        updates.append(model.weight.detach().clone())
    torch.testing.assert_close(updates[0], updates[1])  # same seed, same noise
    big = nn.Linear(400, 250)
    optimizer = torch.optim.SGD(big.parameters(), lr=1.0)
    dp_sgd_step(big, optimizer, lambda: big(torch.zeros(0, 400)), torch.zeros(0, dtype=torch.long),
                max_grad_norm=2.0, noise_multiplier=3.0, expected_batch_size=10.0,
                generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert big.weight.grad.std().item() == pytest.approx(3.0 * 2.0 / 10.0, rel=0.05)


def _clipped_reference(model, forward_one, targets, clip):
    expected = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for i in range(len(targets)):
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(forward_one(i), targets[i : i + 1]).backward()
        norm = torch.sqrt(sum((p.grad**2).sum() for p in model.parameters()))
        for name, p in model.named_parameters():
            expected[name] += p.grad * min(1.0, clip / (float(norm) + 1e-6))
    return expected


@pytest.mark.parametrize("mode", ["tokens", "mean_bag"])
def test_bookkeeping_step_matches_clipped_reference_for_every_layer_kind(mode):
    torch.manual_seed(1)
    if mode == "tokens":
        model = nn.ModuleDict({"emb": nn.Embedding(15, 4), "norm": nn.LayerNorm(4), "out": nn.Linear(4, 2)})
        ids = torch.randint(0, 15, (6, 5))
        ids[0, 1] = ids[0, 3]
        run = lambda x: model["out"](model["norm"](model["emb"](x)).mean(1))  # noqa: E731
        forward_all, forward_one = (lambda: run(ids)), (lambda i: run(ids[i : i + 1]))
    else:
        model = nn.ModuleDict({"bag": nn.EmbeddingBag(25, 4, mode="mean"), "out": nn.Linear(4, 2)})
        lengths = torch.tensor([2, 3, 1, 4, 2, 2])
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
        indices = torch.randint(0, 25, (int(lengths.sum()),))
        run = lambda idx, off: model["out"](model["bag"](idx, off))  # noqa: E731
        forward_all = lambda: run(indices, offsets)  # noqa: E731

        def forward_one(i: int) -> torch.Tensor:
            start = int(offsets[i])
            return run(indices[start : start + int(lengths[i])], torch.zeros(1, dtype=torch.long))

    targets = torch.randint(0, 2, (6,))
    expected = _clipped_reference(model, forward_one, targets, 0.1)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    dp_sgd_step(model, torch.optim.SGD(model.parameters(), lr=1.0), forward_all, targets,
                max_grad_norm=0.1, noise_multiplier=0.0, expected_batch_size=6.0)  # fmt: skip
    for name, p in model.named_parameters():
        torch.testing.assert_close(before[name] - p.detach(), expected[name] / 6.0, rtol=1e-4, atol=1e-7)


def test_virtual_steps_give_the_same_update_as_one_physical_batch():
    torch.manual_seed(1)
    indices, offsets, weights, lengths = bag_batch(5, 12, 40, True)
    targets = torch.randint(0, 2, (12,))
    updates = []
    for chunked in (False, True):
        torch.manual_seed(2)
        model = NgramBagClassifier(40, 4, 2, hidden_dim=4)
        model.embedding.frugalml_unique_per_bag = False
        before = [p.detach().clone() for p in model.parameters()]
        parts = None
        if chunked:  # three physical micro-batches of 5, 5 and 2 samples
            parts = []
            for start in (0, 5, 10):
                rows = range(start, min(start + 5, 12))
                bags = [slice_bag(indices, offsets, weights, lengths, i) for i in rows]
                flat = (torch.cat([b[0] for b in bags]),
                        torch.tensor([0, *torch.cumsum(torch.tensor([len(b[0]) for b in bags]), 0)[:-1].tolist()]),
                        torch.cat([b[2] for b in bags]))  # fmt: skip
                parts.append((lambda flat=flat, m=model: m(*flat), targets[start : start + 5]))
        generator = torch.Generator().manual_seed(7)
        dp_sgd_step(model, torch.optim.SGD(model.parameters(), lr=1.0), lambda m=model: m(indices, offsets, weights),
                    targets, max_grad_norm=0.05, noise_multiplier=0.5, expected_batch_size=12.0, generator=generator,
                    microbatches=parts)  # fmt: skip
        updates.append([b - p.detach() for b, p in zip(before, model.parameters(), strict=True)])
    for whole, chunked in zip(*updates, strict=True):
        torch.testing.assert_close(whole, chunked, rtol=1e-4, atol=1e-7)
    assert any(float(u.abs().sum()) > 0 for u in updates[0])
