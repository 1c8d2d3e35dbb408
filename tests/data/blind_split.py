#!/usr/bin/env python3
"""Builds tests/data/blind.jsonl and blind_spam.jsonl from their source lists and fixes the split.

The blind set (session 32, assist4) was written before reading the matcher. Each line carries
`lang` (en, zh = simplified Chinese, hant = traditional Chinese, mixed = Chinese with English
words) and `split`. The split rule, fixed once: within each stratum (lang x on-topic/off-topic,
or lang x spam/ham), sort the lines by sha256("s32-blind:" + text); the first ceil(n/2) are
"tune", the rest "report". Tune on "tune" only; report figures from "report".

Usage: blind_split.py check   (verifies the committed files follow the rule; exit 1 if not).
The build mode (two "label|lang|text" lists) was run once; the .jsonl files are the source now.
"""
import hashlib
import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).parent


def split_of(rows, stratum, salt="s32-blind:"):
    """Returns {index: "tune"|"report"} for rows, by the rule in the module doc (`salt`: the
    hash prefix; blind2_split.py uses the same rule with its own)."""
    groups = {}
    for i, row in enumerate(rows):
        groups.setdefault(stratum(row), []).append(i)
    out = {}
    for idx in groups.values():
        idx.sort(key=lambda i: hashlib.sha256((salt + rows[i]["text"]).encode()).hexdigest())
        half = math.ceil(len(idx) / 2)
        for k, i in enumerate(idx):
            out[i] = "tune" if k < half else "report"
    return out


def check(path, stratum, salt="s32-blind:"):
    rows = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    want = split_of(rows, stratum, salt)
    bad = [r["text"] for i, r in enumerate(rows) if r.get("split") != want[i]]
    if bad:
        print(f"{path}: {len(bad)} lines off the split rule, e.g. {bad[0]!r}")
        return False
    return True


FAQ_STRATUM = lambda r: (r["lang"], r["expect"] is None)
SPAM_STRATUM = lambda r: (r["lang"], r["spam"])

def build(faq_list, spam_list, prefix="blind", salt="s32-blind:"):
    """Writes PREFIX.jsonl and PREFIX_spam.jsonl from "expect|lang|text" and
    "spam|lang|text" lists, each line with its split under `salt`."""
    faq = []
    for line in Path(faq_list).read_text().splitlines():
        exp, lang, text = line.split("|", 2)
        faq.append({"group": "support", "text": text, "expect": None if exp == "-" else exp, "lang": lang})
    spam = []
    for line in Path(spam_list).read_text().splitlines():
        s, lang, text = line.split("|", 2)
        spam.append({"text": text, "spam": s == "1", "lang": lang})
    for rows, stratum, name in ((faq, FAQ_STRATUM, f"{prefix}.jsonl"), (spam, SPAM_STRATUM, f"{prefix}_spam.jsonl")):
        sp = split_of(rows, stratum, salt)
        for i, r in enumerate(rows):
            r["split"] = sp[i]
        (HERE / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


if __name__ == "__main__":
    if sys.argv[1:] == ["check"]:
        ok = check(HERE / "blind.jsonl", FAQ_STRATUM) & check(HERE / "blind_spam.jsonl", SPAM_STRATUM)
        sys.exit(0 if ok else 1)
    build(sys.argv[1], sys.argv[2])
