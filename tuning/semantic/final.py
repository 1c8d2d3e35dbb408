#!/usr/bin/env python3
"""The held-out figures of the rules chosen on the tune parts with fuse.py (run once, session 35).

    python3 final.py DUMP.jsonl E5.npz STATIC256.npz

Rules (all: accept what the lexical matcher accepts, plus the lexical top candidate when it
passes overlap, on-topic, margin, no closer background topic and score >= t, but fails only
the two-shared-words corroboration or the threshold between t and 0.2, if the embedding says
the same: its cosine with the candidate entry >= tau and the candidate is the embedding's
nearest entry (lead >= mu) or within delta of it):
  e5:      real multilingual-e5-small, entry = centroid of its questions' vectors mixed 0.8/0.2
           with its answer's ("passage: "); t 0.15, tau 0.88, mu 0, delta 0.02
  static:  distilled static table (256 dims, SIF a=1e-3, all 99k Latin/CJK pieces), entry = its
           best question; t 0.15, tau 0.70, mu 0, delta 0.01
  control: the same relaxation with no embedding condition (what relaxing lexically buys).
"""
import sys
from fuse import load, entry_sims, score, table, totals, TUNE, HELD

dump, e5, static = sys.argv[1:4]
rows, E, ix = load(dump, e5)
_, S, ixs = load(dump, static)
ve = entry_sims(rows, E, ix, "mean", 0.2, "answer_p")
vs = entry_sims(rows, S, ixs, "max", 0.0)
rules = [
    ("baseline", ve, "baseline", {}),
    ("control (no embedding)", ve, "corroborate", {"t": 0.15, "tau": 0.0, "mu": 0.0, "delta": 1.0}),
    ("e5", ve, "corroborate", {"t": 0.15, "tau": 0.88, "mu": 0.0, "delta": 0.02}),
    ("static256", vs, "corroborate", {"t": 0.15, "tau": 0.70, "mu": 0.0, "delta": 0.01}),
]
for parts, what in [(TUNE, "TUNE"), (HELD, "HELD-OUT")]:
    for name, view, rule, p in rules:
        res = score(rows, view, rule, p, set(parts))
        t = totals(res, parts)
        print(f"\n== {what} {name}: TP={t[0]} FP={t[1]} FN={t[2]} off-topic answered={t[3]}\n" + table(res, parts))
