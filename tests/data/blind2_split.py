#!/usr/bin/env python3
"""Builds tests/data/blind2.jsonl and blind2_spam.jsonl from their source lists and fixes the split.

The second blind set (session 33, blind2: a mobile carrier / home broadband, Northwind Mobile) was
written before reading the matcher; see BLIND2.md. Same fields and the same split rule as
blind_split.py (per stratum of lang x on/off-topic, or lang x spam/ham, lines sorted by
sha256(salt + text), the first ceil(n/2) "tune", the rest "report"), with the salt "s33-blind2:".

Usage: blind2_split.py check   (verifies both blind sets follow the rule; exit 1 if not).
The build mode (two "label|lang|text" lists, as blind_split.py's) was run once; the .jsonl files
are the source now.
"""
import json
import sys
from pathlib import Path

from blind_split import FAQ_STRATUM, SPAM_STRATUM, check, split_of

HERE = Path(__file__).parent
SALT = "s33-blind2:"

if __name__ == "__main__":
    if sys.argv[1:] == ["check"]:
        ok = check(HERE / "blind.jsonl", FAQ_STRATUM) & check(HERE / "blind_spam.jsonl", SPAM_STRATUM)
        ok &= check(HERE / "blind2.jsonl", FAQ_STRATUM, SALT) & check(HERE / "blind2_spam.jsonl", SPAM_STRATUM, SALT)
        sys.exit(0 if ok else 1)
    faq = []
    for line in Path(sys.argv[1]).read_text().splitlines():
        exp, lang, text = line.split("|", 2)
        faq.append({"group": "support", "text": text, "expect": None if exp == "-" else exp, "lang": lang})
    spam = []
    for line in Path(sys.argv[2]).read_text().splitlines():
        s, lang, text = line.split("|", 2)
        spam.append({"text": text, "spam": s == "1", "lang": lang})
    for rows, stratum, name in ((faq, FAQ_STRATUM, "blind2.jsonl"), (spam, SPAM_STRATUM, "blind2_spam.jsonl")):
        sp = split_of(rows, stratum, SALT)
        for i, r in enumerate(rows):
            r["split"] = sp[i]
        (HERE / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
