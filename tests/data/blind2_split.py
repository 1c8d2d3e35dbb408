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
import sys
from pathlib import Path

from blind_split import FAQ_STRATUM, SPAM_STRATUM, build, check

HERE = Path(__file__).parent
SALT = "s33-blind2:"

if __name__ == "__main__":
    if sys.argv[1:] == ["check"]:
        ok = check(HERE / "blind.jsonl", FAQ_STRATUM) & check(HERE / "blind_spam.jsonl", SPAM_STRATUM)
        ok &= check(HERE / "blind2.jsonl", FAQ_STRATUM, SALT) & check(HERE / "blind2_spam.jsonl", SPAM_STRATUM, SALT)
        sys.exit(0 if ok else 1)
    build(sys.argv[1], sys.argv[2], "blind2", SALT)
