#!/usr/bin/env python3
"""Lint the adversarial corpus and run every case through a sigma binary.

Usage:
    python3 tests/adversarial/check.py [--sigma PATH] [--node NAME] [--lint-only] [-v] [FILE ...]

With no FILE, every *.txt next to this script is read.

Corpus format (one file per class):
    # comment lines; blank lines are ignored
    EXPECT<TAB>COMMAND<TAB>WHY        exactly two TABs per case line
EXPECT is one of:
    blocked     the tier must be blocked
    changes     state-changing or blocked
    heavy+      heavy, state-changing or blocked
    read-only   exactly read-only (controls)
COMMAND escapes: \\n \\r \\t \\0 (NUL) \\\\ (backslash) \\xHH (one raw byte)
\\u{HHHH} (a Unicode scalar, UTF-8 encoded). Any other backslash is kept as a
literal backslash, and the linter warns about it.

Each decoded command is passed as ONE argv element to
    sigma sim run NODE -- COMMAND
which prints the guard's verdict ("TIER: rule") as the first line of stderr.
A command holding NUL cannot travel through argv and is skipped; bytes that
are not UTF-8 are rejected by the CLI's argument parser before the guard sees
them, which is reported separately (nothing runs either way).

Safety: under `sim run` the first segment is simulated, but the filters after
a pipe (grep, head, sort, ...) really run on this machine when the guard
allows the command. So the binary runs in an empty temporary directory, with a
minimal environment and, when this script runs as root, as user nobody.

Exit status: 0 when every case matches, 1 on a mismatch or a lint error.
Python 3 standard library only.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SIGMA = "/opt/sigma-helper/sigma"
DEFAULT_NODE = "h100x8-healthy"
EXPECTS = {
    "blocked": {"blocked"},
    "changes": {"state-changing", "blocked"},
    "heavy+": {"heavy", "state-changing", "blocked"},
    "read-only": {"read-only"},
}
TIERS = ("read-only", "heavy", "state-changing", "blocked")
HEX = set("0123456789abcdefABCDEF")


class Case:
    def __init__(self, path, lineno, expect, raw, why, decoded, warnings):
        self.path = path
        self.lineno = lineno
        self.expect = expect
        self.raw = raw
        self.why = why
        self.decoded = decoded
        self.warnings = warnings

    @property
    def where(self):
        return f"{self.path.name}:{self.lineno}"


def decode(text):
    """Decodes the corpus escapes; returns (bytes, warnings)."""
    out = bytearray()
    warnings = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c != "\\":
            out += c.encode("utf-8")
            i += 1
            continue
        nxt = text[i + 1] if i + 1 < n else ""
        simple = {"n": b"\n", "r": b"\r", "t": b"\t", "0": b"\0", "\\": b"\\"}
        if nxt in simple:
            out += simple[nxt]
            i += 2
        elif nxt == "x" and i + 3 < n and text[i + 2] in HEX and text[i + 3] in HEX:
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        elif nxt == "u" and text[i + 2 : i + 3] == "{":
            end = text.find("}", i + 3)
            digits = text[i + 3 : end] if end != -1 else ""
            if end == -1 or not digits or not set(digits) <= HEX or len(digits) > 6:
                warnings.append(f"malformed \\u{{...}} at column {i + 1}: kept literally")
                out += b"\\"
                i += 1
                continue
            value = int(digits, 16)
            if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
                raise ValueError(f"\\u{{{digits}}} is not a Unicode scalar value")
            out += chr(value).encode("utf-8")
            i = end + 1
        else:
            what = repr(nxt) if nxt else "end of field"
            warnings.append(f"backslash before {what} at column {i + 1} is literal: write \\\\")
            out += b"\\"
            i += 1
    return bytes(out), warnings


def read_corpus(path, errors):
    """Parses one file; appends lint errors; returns its cases."""
    cases = []
    data = path.read_bytes()
    bad = [i for i, b in enumerate(data) if b > 0x7F]
    if bad:
        errors.append(f"{path.name}: non-ASCII byte at offset {bad[0]} (use \\u{{...}} or \\xHH)")
    text = data.decode("utf-8", errors="replace")
    lines = text.split("\n")
    first = next((l for l in lines if l.strip()), "")
    if not first.startswith("#"):
        errors.append(f"{path.name}: must start with a comment naming the class and threat")
    for lineno, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        if line.endswith("\r"):
            errors.append(f"{path.name}:{lineno}: CR line ending")
        if line.count("\t") != 2:
            errors.append(f"{path.name}:{lineno}: {line.count(chr(9))} tabs, need exactly 2")
            continue
        expect, raw, why = line.split("\t")
        if expect not in EXPECTS:
            errors.append(f"{path.name}:{lineno}: unknown EXPECT {expect!r}")
            continue
        if not raw:
            errors.append(f"{path.name}:{lineno}: empty COMMAND")
            continue
        if not why.strip():
            errors.append(f"{path.name}:{lineno}: empty WHY")
        try:
            decoded, warnings = decode(raw)
        except ValueError as e:
            errors.append(f"{path.name}:{lineno}: {e}")
            continue
        cases.append(Case(path, lineno, expect, raw, why, decoded, warnings))
    return cases


def drop_privileges():
    """Runs the child as nobody when we are root (the filters run for real)."""
    if os.getuid() == 0:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)


def verdict(sigma, node, command, workdir):
    """(tier or status, first line) for one decoded command."""
    if b"\0" in command:
        return "skip", "NUL: not passable via argv"
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "NO_COLOR": "1", "HOME": workdir}
    try:
        run = subprocess.run(
            [sigma, "sim", "run", node, "--", command],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            env=env,
            timeout=120,
            preexec_fn=drop_privileges,
        )
    except subprocess.TimeoutExpired:
        return "timeout", "no verdict within 120 s"
    err = run.stderr.decode("utf-8", errors="replace")
    out = run.stdout.decode("utf-8", errors="replace")
    for text in (err, out):
        line = text.split("\n", 1)[0]
        for tier in TIERS:
            if line.startswith(tier + ":"):
                return tier, line
    line = (err.strip() or out.strip()).split("\n", 1)[0]
    if "invalid UTF-8" in line:
        return "cli-refused", line
    return "unknown", f"exit {run.returncode}: {line}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--sigma", default=DEFAULT_SIGMA)
    ap.add_argument("--node", default=DEFAULT_NODE)
    ap.add_argument("--lint-only", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every case")
    args = ap.parse_args()

    files = args.files or sorted(HERE.glob("*.txt"))
    errors = []
    corpus = {f: read_corpus(f, errors) for f in files}
    for cases in corpus.values():
        for c in cases:
            for w in c.warnings:
                print(f"warning: {c.where}: {w}")
    for e in errors:
        print(f"lint error: {e}")
    total = sum(len(c) for c in corpus.values())
    print(f"{len(files)} files, {total} cases, {len(errors)} lint errors")
    if args.lint_only:
        for f, cases in corpus.items():
            print(f"  {f.name:20} {len(cases):4}")
        return 1 if errors else 0

    mismatches = []
    skipped = []
    print(f"\n{'file':20} {'cases':>5} {'ok':>5} {'bad':>5} {'skip':>5}")
    with tempfile.TemporaryDirectory(prefix="sigma-adv-") as workdir:
        os.chmod(workdir, 0o777)
        for f, cases in corpus.items():
            ok = bad = skip = 0
            for c in cases:
                tier, line = verdict(args.sigma, args.node, c.decoded, workdir)
                if tier in TIERS:
                    good = tier in EXPECTS[c.expect]
                    ok += good
                    bad += not good
                    if not good:
                        mismatches.append((c, tier, line))
                else:
                    skip += 1
                    skipped.append((c, tier, line))
                if args.verbose:
                    mark = "ok " if tier in EXPECTS[c.expect] else "BAD" if tier in TIERS else "-- "
                    print(f"  {mark} {c.where:24} {c.expect:9} {tier:14} {c.raw}")
            print(f"{f.name:20} {len(cases):5} {ok:5} {bad:5} {skip:5}")

    if skipped:
        print("\nnot judged:")
        for c, tier, line in skipped:
            print(f"  {c.where}: {c.raw}  [{tier}] {line}")
    if mismatches:
        print(f"\n{len(mismatches)} mismatches (expected -> got):")
        for c, tier, line in mismatches:
            print(f"  {c.where}: {c.expect} -> {tier}: {c.raw}")
            print(f"      why: {c.why}")
            print(f"      guard: {line}")
    else:
        print("\nno mismatches")
    return 1 if mismatches or errors else 0


if __name__ == "__main__":
    sys.exit(main())
