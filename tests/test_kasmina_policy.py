"""Kasmina on the style policy: the growth loop germinates an extra attention head on the seeded
policy, the grown policy has more live parameters than the fixed host, events are logged, a run is
bit-for-bit reproducible, and a germinated seed changes nothing until it blends in."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from krystal.learning import harvest  # noqa: E402
from krystal.learning.kasmina import blueprints  # noqa: E402
from krystal.learning.kasmina.grow import GrowthResult, deterministic  # noqa: E402
from krystal.learning.kasmina.policy import (  # noqa: E402
    POLICY_QUICK,
    PolicyTask,
    SeededPolicy,
    fixed_policy,
    grow_policy,
    host_config,
    policy_task,
)
from krystal.learning.kasmina.seeds import EventLog, SeedState  # noqa: E402
from krystal.learning.policy_model import PolicyNet  # noqa: E402

# Long enough for the quick host to plateau once and its seed to blend in; always fossilized, so the
# params check does not hang on one seed's effect.
CONFIG = dataclasses.replace(POLICY_QUICK, epochs=40, max_seeds=1, min_effect=-1.0)


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> PolicyTask:
    runs = harvest.synthesize(tmp_path_factory.mktemp("synth"), 4, seed=3, duration_s=30.0)
    return policy_task(harvest.harvest(*runs), seed=0)


@pytest.fixture(scope="module")
def grown(
    task: PolicyTask, tmp_path_factory: pytest.TempPathFactory
) -> tuple[GrowthResult[SeededPolicy], Path]:
    path = tmp_path_factory.mktemp("kasmina-policy") / "events.jsonl"
    return grow_policy(task, CONFIG, events_path=path), path


def test_task_splits_whole_recordings(task: PolicyTask) -> None:
    source = task.arrays["source"]
    train = set(source[task.train].tolist())
    val, test = set(source[task.val].tolist()), set(source[task.test].tolist())
    assert train and val and test
    assert not train & val and not train & test and not val & test
    assert train | val | test == set(source.tolist())
    assert task.n_train + int(task.val.sum()) + int(task.test.sum()) == len(source)


def test_policy_plateau_germinates_a_head_and_grows(
    task: PolicyTask, grown: tuple[GrowthResult[SeededPolicy], Path]
) -> None:
    result, path = grown
    names = [(e.event, e.blueprint) for e in result.events]
    assert names == [("germinated", "head"), ("blending", "head"), ("fossilized", "head")], names
    assert EventLog.read(path) == result.events
    slot = result.model.slot(result.events[0].slot)
    assert slot.state is SeedState.FOSSILIZED and isinstance(slot.seed, blueprints.TokenHead)
    small = fixed_policy(task, CONFIG)
    assert not small.events and not small.model.slots
    net = PolicyNet(task.x.shape[1], task.x.shape[2], task.n_classes, host_config(CONFIG))
    assert small.params == sum(p.numel() for p in net.parameters())  # the policy's own shape
    assert result.params == small.params + result.events[0].params > small.params
    assert 0.0 < result.test_accuracy <= 1.0 and np.isfinite(result.test_loss)
    # Before germination the grown run is the small one, epoch for epoch.
    germ = result.events[0].epoch
    assert [h.val_loss for h in result.history[: germ + 1]] == [h.val_loss for h in small.history[: germ + 1]]


def test_policy_run_is_bit_for_bit_reproducible(
    task: PolicyTask, grown: tuple[GrowthResult[SeededPolicy], Path]
) -> None:
    first, _ = grown
    again = grow_policy(task, CONFIG)
    assert again.digest == first.digest
    assert again.history == first.history and again.events == first.events
    other = grow_policy(task, dataclasses.replace(CONFIG, seed=1, epochs=3))
    assert other.digest != first.digest


def test_germinated_seed_leaves_the_host_until_it_blends(task: PolicyTask) -> None:
    with deterministic(0):
        model = SeededPolicy(task.x.shape[1], task.x.shape[2], task.n_classes, host_config(CONFIG), 2)
        x = task.x[:16]
        model.eval()
        with torch.no_grad():
            before = model(x)
        slot = model.slot(1)
        slot.germinate("head", 0)
        assert slot.seed is not None
        with torch.no_grad():
            for p in slot.seed.parameters():
                p.add_(torch.randn_like(p))  # a trained seed, not the zero function
        with torch.no_grad():
            training = model(x)  # eval mode: the live model is the host's while the seed trains
            slot.start_blending(1)
            blended0 = model(x)  # alpha 0
            slot.alpha = 1.0
            blended1 = model(x)
            ablated = model(x, frozenset({1}))
        for got in (training, blended0, ablated):
            assert all(torch.equal(a, b) for a, b in zip(got, before, strict=True))
        assert not torch.equal(blended1[0], before[0])
        # A seed in training learns through the frozen host: gradients reach it and nothing else.
        slot.state = SeedState.TRAINING
        model.train()
        for p in model.host_parameters():
            p.requires_grad_(False)
        logit, _ = model(x)
        logit.sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in slot.seed.parameters())
        host = [p for name, p in model.named_parameters() if not name.startswith("slots.")]
        assert len(host) == len(model.host_parameters())  # every host parameter is frozen with the host
        assert all(p.grad is None for p in host)


def test_head_blueprint_is_zero_and_attends_across_tokens() -> None:
    with deterministic(0):
        head = blueprints.build("head", 8)
        h = torch.randn(3, 5, 8)
        assert torch.equal(head(h), torch.zeros(3, 5, 8))
        with torch.no_grad():
            for p in head.parameters():
                p.add_(0.3 * torch.randn_like(p))
        moved = h.clone()
        moved[:, 4] = torch.randn(3, 8)  # a new token 4 (not a shift: the head's LayerNorm removes that)
        assert not torch.allclose(head(h)[:, 0], head(moved)[:, 0])  # token 0 sees token 4


def test_cli_grows_the_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from krystal.cli import main

    args = ["train", "grow", "--task", "policy", "--quick", "--blueprint", "head", "--out", str(tmp_path)]
    assert main(args) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["model"] for r in rows] == ["grown", "fixed-small", "fixed-large"]
    assert rows[0]["params"] >= rows[1]["params"] and rows[2]["params"] > rows[1]["params"]
    assert (tmp_path / "events-policy-seed0.jsonl").exists()
    assert main([*args[:-4], "--blueprint", "attention", "--out", str(tmp_path)]) == 2
