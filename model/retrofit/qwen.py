"""A plain PyTorch forward pass of a llama/qwen2 GGUF, for fitting retrofits.

Weights are dequantized to f32 with gguf-py, in Hugging Face layout
(`[out, in]`). The pass follows `model/SIGMA-GGUF.md`: RMSNorm, Q/K/V (Qwen2
biases), NeoX RoPE on pairs (i, i + d/2), causal attention where query head i
reads K head i * n_k // n_q and V head i * n_v // n_q, output projection,
SwiGLU FFN. llama files store Q and K rows permuted for llama.cpp's pairwise
RoPE; they are permuted back on load so every model uses the NeoX pairing.
"""

from __future__ import annotations

import dataclasses
import hashlib

import gguf
import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

# Pre-tokenizer patterns by `tokenizer.ggml.pre`, applied in order (as
# llama.cpp's `qwen2` and `smollm` pre-tokenizers do).
PRETOKENIZE = {
    "qwen2": [r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"],
    "smollm": [r"\p{N}", r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"],
}


@dataclasses.dataclass
class Config:
    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    rope_base: float
    eps: float


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _field(reader: gguf.GGUFReader, key: str):
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def unpermute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's converter permutation of Q/K rows (pairwise RoPE ->
    NeoX halves), per head: rows (2i, 2i+1) go to (i, i + d/2)."""
    rows = w.shape[0]
    d = rows // n_head
    return w.reshape(n_head, d // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(rows, *w.shape[1:])


class Model:
    """Dequantized weights plus the forward pass."""

    def __init__(self, path: str):
        reader = gguf.GGUFReader(path)
        arch = _field(reader, "general.architecture")
        if arch not in ("qwen2", "llama"):
            raise SystemExit(f"error: {path}: architecture {arch!r} cannot be retrofitted (qwen2 or llama)")
        a = lambda k: _field(reader, f"{arch}.{k}")  # noqa: E731
        n_embd, n_head = a("embedding_length"), a("attention.head_count")
        self.cfg = Config(
            arch=arch,
            n_layer=a("block_count"),
            n_embd=n_embd,
            n_head=n_head,
            n_head_kv=a("attention.head_count_kv"),
            head_dim=a("attention.key_length") or n_embd // n_head,
            rope_base=a("rope.freq_base") or 10000.0,
            eps=a("attention.layer_norm_rms_epsilon"),
        )
        self.path = path
        self.w: dict[str, torch.Tensor] = {}
        for t in reader.tensors:
            x = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
            x = x.reshape([int(n) for n in reversed(t.shape)])
            if arch == "llama" and (".attn_q." in t.name or ".attn_k." in t.name):
                heads = n_head if ".attn_q." in t.name else self.cfg.n_head_kv
                x = unpermute_rows(x, heads)
            self.w[t.name] = torch.from_numpy(np.ascontiguousarray(x))
        if "output.weight" not in self.w:
            self.w["output.weight"] = self.w["token_embd.weight"]
        tokens = _field(reader, "tokenizer.ggml.tokens")
        merges = _field(reader, "tokenizer.ggml.merges")
        tok = Tokenizer(
            models.BPE(
                vocab={t: i for i, t in enumerate(tokens)},
                merges=[tuple(m.split(" ", 1)) for m in merges],
                ignore_merges=False,
            )
        )
        pre = _field(reader, "tokenizer.ggml.pre")
        if pre not in PRETOKENIZE:
            raise SystemExit(f"error: {path}: pre-tokenizer {pre!r} is not one we reproduce ({', '.join(PRETOKENIZE)})")
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in PRETOKENIZE[pre]]
            + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
        )
        tok.decoder = decoders.ByteLevel()
        self.tok = tok
        d = self.cfg.head_dim
        self.inv_freq = self.cfg.rope_base ** (-torch.arange(0, d // 2, dtype=torch.float64) * 2 / d)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    # --- pieces of the forward pass -------------------------------------
    def lw(self, il: int, name: str) -> torch.Tensor | None:
        return self.w.get(f"blk.{il}.{name}")

    def norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.cfg.eps) * weight

    def rope_tables(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        ang = torch.arange(n, dtype=torch.float64)[:, None] * self.inv_freq[None, :]
        return ang.cos().float(), ang.sin().float()

    @staticmethod
    def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """NeoX RoPE on `(..., T, d)`: pair (i, i + d/2) is one complex number."""
        h = x.shape[-1] // 2
        re, im = x[..., :h], x[..., h:]
        return torch.cat([re * cos - im * sin, re * sin + im * cos], dim=-1)

    def project(self, il: int, h: torch.Tensor, which: str) -> torch.Tensor:
        y = h @ self.lw(il, f"attn_{which}.weight").T
        b = self.lw(il, f"attn_{which}.bias")
        return y if b is None else y + b

    def attend(self, q, k, v, cos, sin) -> torch.Tensor:
        """q `(B, T, n_q d)`, k `(B, T, n_k d)`, v `(B, T, n_v d)` -> `(B, T, n_q d)`."""
        d = self.cfg.head_dim
        B, T, _ = q.shape
        heads = lambda t: t.view(B, T, -1, d).transpose(1, 2)  # noqa: E731
        q, k, v = heads(q), heads(k), heads(v)
        n_q = q.shape[1]
        q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)
        # query head i reads K head i * n_k // n_q and V head i * n_v // n_q
        k = k.repeat_interleave(n_q // k.shape[1], dim=1)
        v = v.repeat_interleave(n_q // v.shape[1], dim=1)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return o.transpose(1, 2).reshape(B, T, n_q * d)

    def attention(self, il: int, x: torch.Tensor, cos, sin, k=None, q=None) -> torch.Tensor:
        """The attention branch of block `il` on the residual stream `x`;
        `k`/`q` replace the block's own projections when given."""
        h = self.norm(x, self.lw(il, "attn_norm.weight"))
        q = self.project(il, h, "q") if q is None else q
        k = self.project(il, h, "k") if k is None else k
        o = self.attend(q, k, self.project(il, h, "v"), cos, sin)
        return o @ self.lw(il, "attn_output.weight").T

    def ffn(self, il: int, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x, self.lw(il, "ffn_norm.weight"))
        g = F.silu(h @ self.lw(il, "ffn_gate.weight").T) * (h @ self.lw(il, "ffn_up.weight").T)
        return g @ self.lw(il, "ffn_down.weight").T

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.w["token_embd.weight"][ids]

    def final(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised last hidden state (logits are `final @ output.T`)."""
        return self.norm(x, self.w["output_norm.weight"])

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.w["output.weight"].T
