"""Fit a DiffQKV retrofit of a GQA model: fewer K heads, V heads unchanged.

    python model/retrofit/fit.py --base BASE.gguf --k-heads 1 --out DELTA.gguf

Steps (each measured on the evaluation prompts with --measure):
  mean     mean pooling of the merged K heads (the GQA paper's init);
  weights  RoPE-exact complex merge fitted on the weights alone;
  closed   RoPE-exact complex merge fitted on calibration K and Q;
  refine   per-layer refinement of the merged W_k, its bias and the per-head
           complex scalars: each block's attention output matches the
           original block's on the same input, the output of the blocks
           already retrofitted (as GPTQ does).

RoPE-exact merge. Per RoPE frequency pair f, key head j's pair is a complex
number z_jf = k[f] + i k[f + d/2]; RoPE multiplies it by e^{i theta_f t}. The
merged head is c_f = sum_j w_jf z_jf (complex w), and query head h gets a
complex scalar a_hf folded into its W_q rows and q bias, so
Re(a_hf q_hf conj(c_f)) stands for Re(q_hf conj(z_{g(h)f})). Both maps are
complex scalars per pair, so they commute with every RoPE rotation. With
Lambda_j = sum over the query heads reading j of E|q_hf|^2 (query energy),
the merge minimising sum_j Lambda_j E|z_jf - conj(a) c_f|^2 is the top
eigenvector v of the weighted Gram matrix G_jk = sqrt(L_j L_k) E[conj(z_j) z_k]:
w_j = sqrt(L_j) v_j and a_h = v_g(h) / sqrt(L_g(h)). The K bias goes through
the same combination, exactly.

The delta (a small GGUF) holds per block the merged `attn_k.weight` (f16),
`attn_k.bias` and `attn_q_rot` (per query head and pair: re, im); `sigma
model retrofit --delta` applies it to the base.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import gguf
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import corpus  # noqa: E402
from qwen import Model, sha256  # noqa: E402


class Retrofit:
    """One block's merged K projection and per-query-head complex scalars
    (NeoX pairing: pair f is dims (f, f + d/2))."""

    def __init__(self, wk: torch.Tensor, bk: torch.Tensor | None, a: torch.Tensor):
        self.wk = wk  # (n_k_new d, n_embd)
        self.bk = bk  # (n_k_new d) or None
        self.a = a  # (n_q, 2, d/2): re, im

    def k(self, h: torch.Tensor) -> torch.Tensor:
        y = h @ self.wk.T
        return y if self.bk is None else y + self.bk

    def rotate_q(self, q: torch.Tensor, d: int) -> torch.Tensor:
        """Multiplies each query head's pairs by its complex scalars."""
        shape = q.shape
        q = q.reshape(*shape[:-1], -1, d)
        re, im = q[..., : d // 2], q[..., d // 2 :]
        ar, ai = self.a[:, 0], self.a[:, 1]
        return torch.cat([ar * re - ai * im, ar * im + ai * re], dim=-1).reshape(shape)


def groups(n_kv: int, k_heads: int) -> list[list[int]]:
    """The old K heads each new K head merges."""
    per = n_kv // k_heads
    return [list(range(m * per, (m + 1) * per)) for m in range(k_heads)]


def complex_rows(w: torch.Tensor, d: int) -> torch.Tensor:
    """`(n_heads d, ...)` real rows -> `(n_heads, d/2, ...)` complex (pair f = rows f, f + d/2)."""
    w = w.reshape(-1, d, *w.shape[1:]).double()
    return torch.complex(w[:, : d // 2], w[:, d // 2 :])


def real_rows(c: torch.Tensor) -> torch.Tensor:
    """Inverse of `complex_rows`."""
    return torch.cat([c.real, c.imag], dim=1).reshape(-1, *c.shape[2:]).float()


def merge(model: Model, il: int, k_heads: int, gram: torch.Tensor | None, q_energy: torch.Tensor | None) -> Retrofit:
    """The RoPE-exact merge of block `il`.

    gram: `(n_kv, n_kv, d/2)` complex E[conj(z_j) z_k] per pair; None: from
    the weights alone (isotropic input, no bias). q_energy: `(n_q, d/2)`
    E|q_hf|^2; None: equal weights.
    """
    cfg = model.cfg
    d, n_q, n_kv = cfg.head_dim, cfg.n_head, cfg.n_head_kv
    W = complex_rows(model.lw(il, "attn_k.weight"), d)  # (n_kv, d/2, n_embd)
    b = model.lw(il, "attn_k.bias")
    B = complex_rows(b[:, None], d)[..., 0] if b is not None else None  # (n_kv, d/2)
    if gram is None:
        gram = torch.einsum("jfe,kfe->jkf", W.conj(), W)
    if q_energy is None:
        q_energy = torch.ones(n_q, d // 2, dtype=torch.float64)
    reader = [h * n_kv // n_q for h in range(n_q)]
    lam = torch.zeros(n_kv, d // 2, dtype=torch.float64)
    for h in range(n_q):
        lam[reader[h]] += q_energy[h].double()
    wk = torch.zeros(k_heads, d // 2, W.shape[-1], dtype=torch.complex128)
    bk = torch.zeros(k_heads, d // 2, dtype=torch.complex128)
    v_of = torch.zeros(n_kv, d // 2, dtype=torch.complex128)
    for m, members in enumerate(groups(n_kv, k_heads)):
        s = lam[members].sqrt()  # (J, d/2)
        g = gram[members][:, members].permute(2, 0, 1)  # (d/2, J, J)
        g = s.T[:, :, None] * g * s.T[:, None, :]
        _, vecs = torch.linalg.eigh(g)
        v = vecs[:, :, -1].T  # (J, d/2), top eigenvector per pair
        w = s * v
        wk[m] = (w[:, :, None] * W[members]).sum(0)
        if B is not None:
            bk[m] = (w * B[members]).sum(0)
        v_of[members] = v / s
    a = torch.stack([v_of[reader].real, v_of[reader].imag], dim=1).float()  # (n_q, 2, d/2)
    return Retrofit(real_rows(wk), real_rows(bk) if B is not None else None, a)


def mean_pool(model: Model, il: int, k_heads: int) -> Retrofit:
    cfg = model.cfg
    d = cfg.head_dim
    wk = model.lw(il, "attn_k.weight").reshape(cfg.n_head_kv, d, -1)
    b = model.lw(il, "attn_k.bias")
    gs = groups(cfg.n_head_kv, k_heads)
    w = torch.stack([wk[g].mean(0) for g in gs]).reshape(k_heads * d, -1)
    bk = None if b is None else torch.stack([b.reshape(cfg.n_head_kv, d)[g].mean(0) for g in gs]).reshape(-1)
    a = torch.zeros(cfg.n_head, 2, d // 2)
    a[:, 0] = 1.0
    return Retrofit(w, bk, a)


def stats(model: Model, il: int, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Calibration Gram of the K pairs and query energy per head and pair."""
    d = model.cfg.head_dim
    k = model.project(il, h, "k").reshape(-1, model.cfg.n_head_kv, d).double()
    q = model.project(il, h, "q").reshape(-1, model.cfg.n_head, d).double()
    z = torch.complex(k[..., : d // 2], k[..., d // 2 :])  # (T, n_kv, d/2)
    gram = torch.einsum("tjf,tkf->jkf", z.conj(), z) / z.shape[0]
    energy = (q[..., : d // 2] ** 2 + q[..., d // 2 :] ** 2).mean(0)  # (n_q, d/2)
    return gram, energy


def attention_with(model: Model, il: int, x: torch.Tensor, r: Retrofit | None, cos, sin) -> torch.Tensor:
    if r is None:
        return model.attention(il, x, cos, sin)
    h = model.norm(x, model.lw(il, "attn_norm.weight"))
    q = r.rotate_q(model.project(il, h, "q"), model.cfg.head_dim)
    return model.attention(il, x, cos, sin, k=r.k(h), q=q)


def refine(model: Model, il: int, r: Retrofit, x: torch.Tensor, target: torch.Tensor, cos, sin, steps: int, batch: int, lr: float) -> tuple[Retrofit, float, float]:
    """Trains W_k, b_k and the scalars so block il's attention output on the
    retrofitted stream `x` matches `target`; returns the fit and the relative
    error before and after (the fit is kept only if it helps)."""
    d = model.cfg.head_dim
    with torch.no_grad():
        h = model.norm(x, model.lw(il, "attn_norm.weight"))
        q0 = model.project(il, h, "q")
        v = model.project(il, h, "v")
    wo = model.lw(il, "attn_output.weight")
    wk = r.wk.clone().requires_grad_(True)
    bk = r.bk.clone().requires_grad_(True) if r.bk is not None else None
    a = r.a.clone().requires_grad_(True)
    opt = torch.optim.Adam([p for p in (wk, bk, a) if p is not None], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    g = torch.Generator().manual_seed(il)
    norm = target.pow(2).mean()

    def err(idx) -> torch.Tensor:
        cur = Retrofit(wk, bk, a)
        o = model.attend(cur.rotate_q(q0[idx], d), cur.k(h[idx]), v[idx], cos, sin) @ wo.T
        return (o - target[idx]).pow(2).mean() / norm

    def full() -> float:
        with torch.no_grad():
            chunks = torch.arange(len(x)).split(batch)
            return float(sum(err(c) * len(c) for c in chunks) / len(x))

    before = full()
    for _ in range(steps):
        loss = err(torch.randperm(len(x), generator=g)[:batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    after = full()
    if after >= before:
        return r, before, before
    return Retrofit(wk.detach(), bk.detach() if bk is not None else None, a.detach()), before, after


def fit(model: Model, ids: torch.Tensor, k_heads: int, method: str, steps: int, batch: int, lr: float, log) -> list[Retrofit]:
    """Fits every block, in order, on calibration token windows `ids` (S, T)."""
    cos, sin = model.rope_tables(ids.shape[1])
    with torch.no_grad():
        xr = model.embed(ids)  # the retrofitted model's residual stream
    fits = []
    for il in range(model.cfg.n_layer):
        t0 = time.time()
        with torch.no_grad():
            h = model.norm(xr, model.lw(il, "attn_norm.weight"))
            if method == "mean":
                r = mean_pool(model, il, k_heads)
            elif method == "weights":
                r = merge(model, il, k_heads, None, None)
            else:
                gram, energy = stats(model, il, h.reshape(-1, h.shape[-1]))
                r = merge(model, il, k_heads, gram, energy)
            # the original block's attention on the same (retrofitted) input
            target = model.attention(il, xr, cos, sin)
        msg = f"block {il:2}"
        if method == "refine" and steps > 0:
            r, before, after = refine(model, il, r, xr, target, cos, sin, steps, batch, lr)
            msg += f"  relative error {before:.4f} -> {after:.4f}"
        with torch.no_grad():
            xr = xr + attention_with(model, il, xr, r, cos, sin)
            xr = xr + model.ffn(il, xr)
        fits.append(r)
        log(f"{msg}  ({time.time() - t0:.1f} s)")
    return fits


@torch.no_grad()
def forward(model: Model, ids: torch.Tensor, fits: list[Retrofit] | None) -> torch.Tensor:
    cos, sin = model.rope_tables(ids.shape[1])
    x = model.embed(ids)
    for il in range(model.cfg.n_layer):
        x = x + attention_with(model, il, x, fits[il] if fits else None, cos, sin)
        x = x + model.ffn(il, x)
    return model.final(x)


@torch.no_grad()
def measure(model: Model, prompts: list[list[int]], fits: list[Retrofit] | None, base_hidden: list[torch.Tensor]) -> dict:
    """Teacher-forced on the prompt text: greedy agreement with the base, KL
    from the base, and both perplexities."""
    agree = n = 0
    kls, nll_b, nll_c = [], 0.0, 0.0
    for ids, hb in zip(prompts, base_hidden):
        hc = forward(model, torch.tensor([ids]), fits)[0]
        for s in range(0, len(ids), 256):
            lb = torch.log_softmax(model.logits(hb[s : s + 256]), -1)
            lc = torch.log_softmax(model.logits(hc[s : s + 256]), -1)
            agree += int((lb.argmax(-1) == lc.argmax(-1)).sum())
            n += lb.shape[0]
            kls.append((lb.exp() * (lb - lc)).sum(-1))
            nxt = torch.tensor(ids[s + 1 : s + 257])
            m = len(nxt)
            nll_b -= float(lb[torch.arange(m), nxt].sum())
            nll_c -= float(lc[torch.arange(m), nxt].sum())
    kl = torch.cat(kls)
    n_next = sum(len(p) - 1 for p in prompts)
    return {
        "positions": n,
        "greedy_agreement": agree / n,
        "mean_kl": float(kl.mean()),
        "max_kl": float(kl.max()),
        "ppl_base": math.exp(nll_b / n_next),
        "ppl_retrofit": math.exp(nll_c / n_next),
    }


def eval_set(model: Model, sigma: str, n: int, cache_dir: str) -> tuple[list[list[int]], list[torch.Tensor]]:
    """The first `n` evaluation prompts and the base's final hidden states on
    them (cached per base file)."""
    cache = os.path.join(cache_dir, f"eval-{sha256(model.path)[:16]}-{n}.pt")
    if os.path.exists(cache):
        return torch.load(cache)
    prompts = corpus.eval_prompts(sigma, model.encode, n=n)
    base_hidden = [forward(model, torch.tensor([p]), None)[0] for p in prompts]
    os.makedirs(cache_dir, exist_ok=True)
    torch.save((prompts, base_hidden), cache)
    return prompts, base_hidden


def write_delta(path: str, model: Model, fits: list[Retrofit], k_heads: int, base_sha: str, method: str) -> None:
    tmp = path + ".partial"
    w = gguf.GGUFWriter(tmp, "sigma-retrofit-delta")
    w.add_string("sigma_delta.base_sha256", base_sha)
    w.add_string("sigma_delta.base_arch", model.cfg.arch)
    w.add_uint32("sigma_delta.head_count_k", k_heads)
    w.add_string("sigma_delta.method", method)
    for il, r in enumerate(fits):
        w.add_tensor(f"blk.{il}.attn_k.weight", r.wk.numpy().astype(np.float16))
        if r.bk is not None:
            w.add_tensor(f"blk.{il}.attn_k.bias", r.bk.numpy().astype(np.float32))
        w.add_tensor(f"blk.{il}.attn_q_rot", r.a.numpy().astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", required=True, help="base GGUF (qwen2 or llama)")
    p.add_argument("--k-heads", type=int, default=1)
    p.add_argument("--out", help="delta GGUF to write")
    p.add_argument("--sigma", default="target/release/sigma", help="the sigma binary (for the simulated nodes)")
    p.add_argument("--method", choices=["mean", "weights", "closed", "refine"], default="refine")
    p.add_argument("--calib-seqs", type=int, default=48)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--measure", type=int, default=0, metavar="N", help="measure on N evaluation prompts")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/sigma/retrofit"), help="where the base's evaluation states are kept")
    args = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    model = Model(args.base)
    cfg = model.cfg
    k = args.k_heads
    if not (0 < k < cfg.n_head_kv and cfg.n_head_kv % k == 0):
        raise SystemExit(f"error: --k-heads {k}: must be smaller than the model's {cfg.n_head_kv} KV heads and divide them")
    log(f"{args.base}: {cfg.arch}, {cfg.n_layer} blocks, {cfg.n_head} Q / {cfg.n_head_kv} KV heads -> {k} K")
    t0 = time.time()
    ids = torch.tensor(corpus.calibration_sequences(args.sigma, model.encode, args.calib_seqs, args.seq_len))
    fits = fit(model, ids, k, args.method, args.steps, args.batch, args.lr, log)
    log(f"fitted in {time.time() - t0:.0f} s")
    report = {"method": args.method, "k_heads": k, "calib_tokens": int(ids.numel()), "steps": args.steps}
    if args.measure:
        prompts, base_hidden = eval_set(model, args.sigma, args.measure, args.cache_dir)
        report.update(measure(model, prompts, fits, base_hidden))
    if args.out:
        write_delta(args.out, model, fits, k, sha256(args.base), json.dumps(report, sort_keys=True))
    print(json.dumps(report))
    return 0


def run(main, resume_hint: str = "") -> int:
    """Runs a command-line `main`: a wrong path, an unreadable or corrupt
    file, or Ctrl-C is one line on stderr, not a traceback."""
    try:
        return main()
    except KeyboardInterrupt:
        print(f"interrupted{resume_hint}", file=sys.stderr)
        return 130
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e} (check the paths and that the files are complete GGUF files)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(run(main))
