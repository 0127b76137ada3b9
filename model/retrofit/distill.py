"""Distil a fitted retrofit against its base model's logits (the last step).

    python model/retrofit/distill.py --base BASE.gguf --delta FITTED.delta.gguf \
        --out DISTILLED.delta.gguf --checkpoint RUN.pt [--steps N] [--measure 4]

`fit.py` fits each block locally; its errors add up through the stack. This
step trains every block's merged `W_k`, K bias and per-head complex scalars at
once (the same numbers the delta holds, so the format does not change) to
minimise KL(base || retrofit) of the next-token distributions on calibration
text. The base's distributions are computed once, kept as their top
`--top-k` log-probabilities plus the tail's mass, and cached. Each step runs
the retrofitted model with gradients on `--batch` windows.

The run checkpoints every `--every` steps (parameters, optimiser, step) and
resumes from `--checkpoint` when it exists, so a CPU run can span sessions.
The delta is written only when the run ends, and only if the held-out measure
(`--measure N` prompts, the ones `fit.py --measure` uses) improves on the
input delta's; otherwise the input is copied unchanged, as every step of the
pipeline keeps only what helps.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

import gguf
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import corpus  # noqa: E402
from fit import Retrofit, attention_with, eval_set, forward, measure, run, write_delta  # noqa: E402
from qwen import Model, sha256  # noqa: E402


def read_delta(path: str, model: Model) -> tuple[list[Retrofit], int]:
    """The per-block fits of a delta written by `fit.py`, checked against `model`."""
    reader = gguf.GGUFReader(path)
    field = lambda k: reader.fields[k].contents()  # noqa: E731
    if field("sigma_delta.base_sha256") != sha256(model.path):
        raise SystemExit(f"error: {path} was fitted for another base (sha256 differs from {model.path})")
    tensors = {t.name: torch.from_numpy(np.array(t.data, dtype=np.float32).reshape([int(n) for n in reversed(t.shape)])) for t in reader.tensors}
    fits = [
        Retrofit(tensors[f"blk.{il}.attn_k.weight"], tensors.get(f"blk.{il}.attn_k.bias"), tensors[f"blk.{il}.attn_q_rot"])
        for il in range(model.cfg.n_layer)
    ]
    return fits, int(field("sigma_delta.head_count_k"))


@torch.no_grad()
def teacher(model: Model, ids: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The base's top-k next-token log-probabilities `(S, T, k)` and their ids."""
    vals, idx = [], []
    for seq in ids:
        lp = torch.log_softmax(model.logits(forward(model, seq[None], None)[0]), -1)
        v, i = lp.topk(top_k, dim=-1)
        vals.append(v)
        idx.append(i)
    return torch.stack(vals), torch.stack(idx)


def student_hidden(model: Model, ids: torch.Tensor, fits: list[Retrofit]) -> torch.Tensor:
    """The retrofitted model's final hidden states, with gradients to the fits."""
    cos, sin = model.rope_tables(ids.shape[1])
    x = model.embed(ids)
    for il in range(model.cfg.n_layer):
        x = x + attention_with(model, il, x, fits[il], cos, sin)
        x = x + model.ffn(il, x)
    return model.final(x)


def kl_topk(student_logits: torch.Tensor, t_lp: torch.Tensor, t_idx: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) over the teacher's top k plus one bucket for the
    rest of the vocabulary, averaged over positions."""
    s_lp = torch.log_softmax(student_logits, -1)
    s_top = s_lp.gather(-1, t_idx)
    t_p = t_lp.exp()
    kl = (t_p * (t_lp - s_top)).sum(-1)
    t_tail = (1 - t_p.sum(-1)).clamp_min(1e-9)
    s_tail = (1 - s_top.exp().sum(-1)).clamp_min(1e-9)
    return (kl + t_tail * (t_tail.log() - s_tail.log())).mean()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", required=True, help="base GGUF the delta was fitted for")
    p.add_argument("--delta", required=True, help="delta written by fit.py (the starting point)")
    p.add_argument("--out", required=True, help="distilled delta to write")
    p.add_argument("--checkpoint", required=True, help="run state: resumed when present, written every --every steps")
    p.add_argument("--sigma", default="target/release/sigma", help="the sigma binary (for the simulated nodes)")
    p.add_argument("--calib-seqs", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--seed", type=int, default=1, help="calibration window order (fit.py uses 0)")
    p.add_argument("--top-k", type=int, default=64)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--measure", type=int, default=4, metavar="N", help="held-out prompts for the keep-if-better check")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/sigma/retrofit"))
    args = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    model = Model(args.base)
    fits, k_heads = read_delta(args.delta, model)

    key = f"{sha256(args.base)[:16]}-{args.calib_seqs}x{args.seq_len}-s{args.seed}-k{args.top_k}"
    cache = os.path.join(args.cache_dir, f"teacher-{key}.pt")
    if os.path.exists(cache):
        ids, t_lp, t_idx = torch.load(cache)
    else:
        t0 = time.time()
        ids = torch.tensor(corpus.calibration_sequences(args.sigma, model.encode, args.calib_seqs, args.seq_len, seed=args.seed))
        t_lp, t_idx = teacher(model, ids, args.top_k)
        os.makedirs(args.cache_dir, exist_ok=True)
        torch.save((ids, t_lp, t_idx), cache)
        log(f"teacher distributions for {ids.numel()} tokens in {time.time() - t0:.0f} s")

    params = []
    for r in fits:
        r.wk.requires_grad_(True)
        r.a.requires_grad_(True)
        params += [r.wk, r.a]
        if r.bk is not None:
            r.bk.requires_grad_(True)
            params.append(r.bk)
    opt = torch.optim.Adam(params, lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    step = 0
    if os.path.exists(args.checkpoint):
        state = torch.load(args.checkpoint)
        with torch.no_grad():
            for p_, saved in zip(params, state["params"]):
                p_.copy_(saved)
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step = state["step"]
        log(f"resumed at step {step}")

    def checkpoint() -> None:
        tmp = args.checkpoint + ".partial"
        torch.save({"params": [p_.detach() for p_ in params], "opt": opt.state_dict(), "sched": sched.state_dict(), "step": step}, tmp)
        os.replace(tmp, args.checkpoint)

    g = torch.Generator().manual_seed(step)
    while step < args.steps:
        t0 = time.time()
        batch = torch.randperm(len(ids), generator=g)[: args.batch]
        hidden = student_hidden(model, ids[batch], fits)
        loss = kl_topk(model.logits(hidden), t_lp[batch], t_idx[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        log(f"step {step:4}/{args.steps}  KL {loss.item():.4f}  ({time.time() - t0:.1f} s)")
        if step % args.every == 0 or step == args.steps:
            checkpoint()

    for r in fits:
        r.wk, r.a = r.wk.detach(), r.a.detach()
        r.bk = r.bk.detach() if r.bk is not None else None
    prompts, base_hidden = eval_set(model, args.sigma, args.measure, args.cache_dir)
    start, _ = read_delta(args.delta, model)
    before = measure(model, prompts, start, base_hidden)
    after = measure(model, prompts, fits, base_hidden)
    log(f"held-out before: {json.dumps(before)}")
    log(f"held-out after:  {json.dumps(after)}")
    report = {"method": "distill", "steps": args.steps, "calib_tokens": int(ids.numel()), "lr": args.lr, **after}
    if after["mean_kl"] < before["mean_kl"]:
        write_delta(args.out, model, fits, k_heads, sha256(args.base), json.dumps(report, sort_keys=True))
    else:
        log("distillation did not lower the held-out KL: the input delta is kept")
        shutil.copyfile(args.delta, args.out)
        report = {"kept": args.delta, **before}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(run(main, ": rerun the same command to resume from the last checkpoint"))
