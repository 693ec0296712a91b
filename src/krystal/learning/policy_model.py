"""Training the learned style policy (needs torch; the reasoning node runs the exported ONNX file).

A small transformer reads the telemetry window (harvest.py) and predicts, for every style class,
whether the next frames in it meet the budget (a logit) and their mean render time (log ms). Only
the style a sample actually rendered is observed, so each loss term is masked to it. Training is
seeded and bit-for-bit reproducible: one thread, deterministic algorithms, a seeded generator.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from krystal.learning.features import SCHEMA_VERSION, normalize
from krystal.learning.harvest import Dataset, file_sha256, load

MODEL_FORMAT = "krystal-policy/1"


@dataclass(frozen=True)
class TrainConfig:
    d_model: int = 32
    heads: int = 4
    layers: int = 2
    ff: int = 64
    epochs: int = 30
    batch: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    held_out: float = 0.25  # share of recordings held out for validation
    stay_threshold: float = 0.5  # keep the current style while p(budget met) is at least this
    up_threshold: float = 0.7  # a better style must be this sure (0.6-0.85 tried on random traces)

    @staticmethod
    def quick(seed: int = 0) -> TrainConfig:
        return TrainConfig(d_model=16, heads=2, layers=1, ff=32, epochs=4, seed=seed)


class Block(torch.nn.Module):
    """Pre-norm self-attention and MLP, written out so export and determinism are plain ops."""

    def __init__(self, d: int, heads: int, ff: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = 1.0 / math.sqrt(d // heads)  # a constant: the traced graph must not compute it
        self.ln1 = torch.nn.LayerNorm(d)
        self.qkv = torch.nn.Linear(d, 3 * d)
        self.out = torch.nn.Linear(d, d)
        self.ln2 = torch.nn.LayerNorm(d)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(d, ff), torch.nn.GELU(), torch.nn.Linear(ff, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.ln1(x)).reshape(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-2, -1) * self.scale, dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, n, d)
        x = x + self.out(y)
        return x + self.mlp(self.ln2(x))  # type: ignore[no-any-return]


class PolicyNet(torch.nn.Module):
    """(batch, window, features) normalized -> (met logit, log ms), each (batch, classes)."""

    def __init__(self, window: int, n_features: int, n_classes: int, cfg: TrainConfig) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.embed = torch.nn.Linear(n_features, cfg.d_model)
        self.pos = torch.nn.Parameter(torch.zeros(1, window, cfg.d_model))
        self.blocks = torch.nn.ModuleList(Block(cfg.d_model, cfg.heads, cfg.ff) for _ in range(cfg.layers))
        self.ln = torch.nn.LayerNorm(cfg.d_model)
        self.head = torch.nn.Linear(2 * cfg.d_model, 2 * n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.embed(x) + self.pos
        for block in self.blocks:
            z = block(z)
        z = self.ln(z)
        out = self.head(torch.cat([z[:, -1], z.mean(dim=1)], dim=1))
        return out[:, : self.n_classes], out[:, self.n_classes :]


def _deterministic(seed: int) -> None:
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def split(ds: Dataset, held_out: float, seed: int) -> tuple[NDArray[np.bool_], list[int]]:
    """Train mask and held-out recordings: whole recordings are held out, never single windows."""
    return split_sources(ds.arrays["source"], held_out, seed)


def split_sources(source: NDArray[Any], held_out: float, seed: int) -> tuple[NDArray[np.bool_], list[int]]:
    """`split` on a per-sample recording index (a subset's, to split it again)."""
    sources = sorted({int(s) for s in source})
    rng = np.random.default_rng(seed)
    order = [sources[i] for i in rng.permutation(len(sources))]
    k = min(len(order) - 1, max(1, round(held_out * len(order)))) if len(order) > 1 else 0
    held = sorted(order[:k])
    return ~np.isin(source, held), held


def feature_stats(x: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
    finite = np.isfinite(flat)
    count = finite.sum(axis=0)
    total = np.where(finite, flat, 0.0).sum(axis=0)
    mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    dev = np.where(finite, flat - mean, 0.0)
    var = np.divide((dev**2).sum(axis=0), count, out=np.ones_like(total), where=count > 0)
    std = np.sqrt(var)
    std = np.where(std < 1e-6, 1.0, std)
    return mean.astype(np.float32), std.astype(np.float32)


@dataclass
class Trained:
    net: PolicyNet
    mean: NDArray[np.float32]
    std: NDArray[np.float32]
    config: TrainConfig
    held_out_sources: list[int]
    metrics: dict[str, float]
    losses: list[float]

    def state_sha256(self) -> str:
        """Hash of every weight's bytes: equal for bit-for-bit equal training runs."""
        h = hashlib.sha256()
        for name, t in sorted(self.net.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().contiguous().numpy().tobytes())
        return h.hexdigest()


def _loss(
    net: PolicyNet, x: torch.Tensor, cls: torch.Tensor, met: torch.Tensor, log_ms: torch.Tensor
) -> torch.Tensor:
    logit, pred = net(x)
    return masked_loss(logit, pred, cls, met, log_ms)


def masked_loss(
    logit: torch.Tensor, pred: torch.Tensor, cls: torch.Tensor, met: torch.Tensor, log_ms: torch.Tensor
) -> torch.Tensor:
    """Budget-met BCE plus half the log-ms MSE, both on the rendered style's outputs only."""
    pick = cls.long().unsqueeze(1)
    lg = logit.gather(1, pick).squeeze(1)
    pm = pred.gather(1, pick).squeeze(1)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(lg, met)
    return bce + 0.5 * torch.nn.functional.mse_loss(pm, log_ms)


def targets(a: dict[str, NDArray[Any]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rendered style, budget met, log mean ms) per sample, as the loss takes them."""
    cls = torch.from_numpy(a["y_class"].astype(np.int64))
    met = torch.from_numpy(a["y_met"].astype(np.float32))
    log_ms = torch.from_numpy(np.log(np.maximum(a["y_latency_ms"], 0.1)).astype(np.float32))
    return cls, met, log_ms


def train(ds: Dataset, cfg: TrainConfig) -> Trained:
    _deterministic(cfg.seed)
    a = ds.arrays
    train_mask, held = split(ds, cfg.held_out, cfg.seed)
    if not train_mask.any():
        raise ValueError("no training samples")
    mean, std = feature_stats(a["x"][train_mask])
    x = torch.from_numpy(normalize(a["x"], mean, std))
    cls, met, log_ms = targets(a)
    n_classes = len(ds.manifest["classes"])
    net = PolicyNet(x.shape[1], x.shape[2], n_classes, cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    idx = torch.from_numpy(np.flatnonzero(train_mask))
    gen = torch.Generator().manual_seed(cfg.seed)
    steps = cfg.epochs * max(1, math.ceil(len(idx) / cfg.batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    losses: list[float] = []
    net.train()
    for _ in range(cfg.epochs):
        perm = idx[torch.randperm(len(idx), generator=gen)]
        total = 0.0
        for start in range(0, len(perm), cfg.batch):
            b = perm[start : start + cfg.batch]
            loss = _loss(net, x[b], cls[b], met[b], log_ms[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(b)
        losses.append(total / len(idx))
    net.eval()
    metrics = evaluate_offline(net, x, a, ~train_mask) if (~train_mask).any() else {}
    return Trained(net, mean, std, cfg, held, metrics, losses)


def evaluate_offline(
    net: PolicyNet, x: torch.Tensor, a: dict[str, NDArray[Any]], mask: NDArray[np.bool_]
) -> dict[str, float]:
    """On held-out recordings: accuracy of 'budget met' for the rendered style, latency error."""
    with torch.no_grad():
        logit, pred = net(x[torch.from_numpy(np.flatnonzero(mask))])
    return offline_metrics(logit, pred, a, mask)


def offline_metrics(
    logit: torch.Tensor, pred: torch.Tensor, a: dict[str, NDArray[Any]], mask: NDArray[np.bool_]
) -> dict[str, float]:
    """evaluate_offline's figures from the outputs on the `mask` samples, in their order."""
    c = torch.from_numpy(a["y_class"][mask].astype(np.int64)).unsqueeze(1)
    p = torch.sigmoid(logit.gather(1, c).squeeze(1)).numpy()
    ms = np.exp(pred.gather(1, c).squeeze(1).numpy())
    met = a["y_met"][mask] == 1
    true_ms = a["y_latency_ms"][mask]
    return {
        "held_out_samples": float(mask.sum()),
        "held_out_met_accuracy": float(((p >= 0.5) == met).mean()),
        "held_out_base_rate": float(max(met.mean(), 1 - met.mean())),
        "held_out_latency_mape": float(np.mean(np.abs(ms - true_ms) / np.maximum(true_ms, 0.1))),
    }


def metadata(t: Trained, ds: Dataset) -> dict[str, Any]:
    m = ds.manifest
    return {
        "format": MODEL_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "dataset_sha256": m["dataset_sha256"],
        "window": int(m["window"]),
        "feature_names": list(m["feature_names"]),
        "normalization": {"mean": [float(v) for v in t.mean], "std": [float(v) for v in t.std]},
        "classes": m["classes"],
        "outputs": {"met_logit": "per class: logit of budget met", "log_ms": "per class: log mean render ms"},
        "budget_ms": float(m["config"]["budget_ms"]),
        "stay_threshold": t.config.stay_threshold,
        "up_threshold": t.config.up_threshold,
        "train": asdict(t.config),
        "held_out_sources": [m["sources"][i]["path"] for i in t.held_out_sources],
        "metrics": t.metrics,
        "weights_sha256": t.state_sha256(),
        "torch": torch.__version__,
    }


def export(t: Trained, ds: Dataset, out_dir: Path, name: str = "policy") -> dict[str, Path]:
    """TorchScript (.pt), ONNX (.onnx, metadata inside as "krystal_policy") and the metadata .json;
    raises when onnxruntime's output differs from torch's beyond 1e-4."""
    import onnx
    import onnxruntime as ort

    out_dir.mkdir(parents=True, exist_ok=True)
    meta = metadata(t, ds)
    example = torch.from_numpy(normalize(ds.arrays["x"][:8], t.mean, t.std))
    pt = out_dir / f"{name}.pt"
    with torch.no_grad():
        traced = torch.jit.trace(t.net, (example,))
    traced.save(str(pt))  # type: ignore[no-untyped-call]
    onnx_path = out_dir / f"{name}.onnx"
    torch.onnx.export(
        t.net,
        (example,),
        str(onnx_path),
        input_names=["window"],
        output_names=["met_logit", "log_ms"],
        dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=4096)}},
        external_data=False,
        verbose=False,
    )
    model = onnx.load(str(onnx_path))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = "krystal_policy", json.dumps(meta, sort_keys=True)
    onnx.save(model, str(onnx_path))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"window": example.numpy()})
    with torch.no_grad():
        want = t.net(example)
        scripted = torch.jit.load(str(pt))(example)  # type: ignore[no-untyped-call]
    errors = [float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want, strict=True)]
    errors += [float((s - w).abs().max()) for s, w in zip(scripted, want, strict=True)]
    err = max(errors)
    if err > 1e-4:
        raise RuntimeError(f"exported model differs from torch by {err:.3g}")
    meta["export_max_abs_error"] = err
    meta["onnx_sha256"] = file_sha256(onnx_path)
    meta["torchscript_sha256"] = file_sha256(pt)
    js = out_dir / f"{name}.json"
    js.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return {"onnx": onnx_path, "torchscript": pt, "metadata": js}


def cli(args: Any) -> int:
    """`krystal train policy DATASET -o DIR`."""
    import sys

    base = Path(args.dataset)
    try:
        ds = load(base.with_suffix("") if base.suffix in (".npz", ".json") else base)
    except (OSError, ValueError, KeyError) as exc:
        print(f"krystal train policy: {exc}", file=sys.stderr)
        return 2
    cfg = TrainConfig.quick(args.seed) if args.quick else TrainConfig(seed=args.seed, epochs=args.epochs)
    cfg = TrainConfig(**{**asdict(cfg), "held_out": args.held_out})
    t = train(ds, cfg)
    files = export(t, ds, Path(args.output))
    print(f"krystal train policy: dataset {ds.sha256[:16]}, weights {t.state_sha256()[:16]}")
    print(f"  loss {t.losses[0]:.4f} -> {t.losses[-1]:.4f} over {cfg.epochs} epochs; held out: {t.metrics}")
    for kind, path in files.items():
        print(f"  {kind}: {path}")
    if not args.no_eval:
        from krystal.learning.policy_eval import closed_loop, format_table

        print(format_table(closed_loop(files["onnx"], seeds=(1,) if args.quick else (1, 2, 3, 4, 5))))
    return 0


def torchscript_scorer(path: Path) -> Any:
    """A callable (window, features) normalized float32 -> outputs, on the TorchScript export with one
    thread: the torch side of the benchmark's inference figure."""
    torch.set_num_threads(1)
    module = torch.jit.load(str(path))  # type: ignore[no-untyped-call]
    module.eval()

    def score(window: NDArray[np.float32]) -> Any:
        with torch.no_grad():
            return module(torch.from_numpy(window[None]))

    return score
