"""Domain text for fitting and for measuring a retrofit, from the repository.

Calibration text: simulated node output of commands the quality benchmark
does not use, `sigma doctor` reports, and the repository's own text (command
catalogue, XID table, question bank, prompts, docs). Evaluation text is what
`sigma bench quality` reads: `nvidia-smi -q`, `dmesg`, `nvidia-smi`,
`lspci -vv` and `nvidia-smi topo -m` on the simulated nodes, none of which
the fit sees.
"""

from __future__ import annotations

import os
import pathlib
import random
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]

# The commands `sigma bench quality` builds its prompts from (in its order).
EVAL_COMMANDS = ["nvidia-smi -q", "dmesg", "nvidia-smi", "lspci -vv", "nvidia-smi topo -m"]

CALIBRATION_COMMANDS = [
    "nvidia-smi -L",
    "nvidia-smi nvlink -s",
    "nvidia-smi --query-gpu=index,name,pci.bus_id,temperature.gpu,power.draw,power.limit,clocks.sm,clocks_throttle_reasons.active,utilization.gpu,memory.used,memory.total --format=csv",
    "nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv",
    "nvidia-smi --query-remapped-rows=gpu_bus_id,remapped_rows.correctable,remapped_rows.uncorrectable,remapped_rows.pending,remapped_rows.failure --format=csv",
    "nvidia-smi topo -p2p r",
    "ibstat",
    "free -h",
    "df -h",
    "uptime",
    "systemctl status nvidia-fabricmanager",
    "dcgmi discovery -l",
    "amd-smi list",
    "amd-smi metric",
]

TEXT_GLOBS = [
    "assets/catalogue/*.toml",
    "assets/xid.toml",
    "assets/bank/*",
    "prompts/*",
    "docs/*.md",
    "README.md",
]


def nodes(sigma: str) -> list[str]:
    out = subprocess.run([sigma, "sim", "list"], check=True, capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def sim(sigma: str, node: str, command: str) -> str | None:
    r = subprocess.run([sigma, "sim", "run", node, "--", *command.split()], capture_output=True, text=True)
    return r.stdout if r.returncode == 0 and r.stdout.strip() else None


def eval_prompts(sigma: str, encode, n: int = 20, min_tokens: int = 1024, max_tokens: int = 2048) -> list[list[int]]:
    """The quality benchmark's prompts, built the way `sigma bench quality` builds them."""
    out, pending = [], ""
    for cmd in EVAL_COMMANDS:
        for node in nodes(sigma):
            text = sim(sigma, node, cmd)
            if text is None:
                continue
            pending += f"$ {cmd}\n{text}\n"
            ids = encode(pending)
            if len(ids) >= min_tokens:
                out.append(ids[:max_tokens])
                pending = ""
                if len(out) == n:
                    return out
    return out


def calibration_text(sigma: str) -> list[str]:
    """Documents of calibration text (deterministic order)."""
    docs = []
    for node in nodes(sigma):
        parts = [f"$ {cmd}\n{text}" for cmd in CALIBRATION_COMMANDS if (text := sim(sigma, node, cmd))]
        docs.append("\n".join(parts))
        r = subprocess.run([sigma, "doctor", "--simulate", node], capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
        if r.stdout.strip():
            docs.append(f"$ sigma doctor\n{r.stdout}")
    for pattern in TEXT_GLOBS:
        for p in sorted(ROOT.glob(pattern)):
            if p.is_file():
                docs.append(p.read_text(errors="replace"))
    return docs


def calibration_sequences(sigma: str, encode, n_seqs: int, seq_len: int, seed: int = 0) -> list[list[int]]:
    """`n_seqs` windows of `seq_len` tokens, drawn evenly from every document."""
    docs = [encode(d) for d in calibration_text(sigma)]
    windows = [ids[i : i + seq_len] for ids in docs for i in range(0, len(ids) - seq_len + 1, seq_len)]
    random.Random(seed).shuffle(windows)
    if len(windows) < n_seqs:
        raise SystemExit(f"error: only {len(windows)} calibration windows of {seq_len} tokens; ask for fewer")
    return windows[:n_seqs]
