#!/usr/bin/env python3
"""Writes the seed corpus of the `frame_decode` fuzz target from the wire spec's test
vectors (../proto-spec/vectors/*.txt) into corpus/frame_decode/.

Each seed is one pattern byte (see fuzz_targets/frame_decode.rs: payload limit and how
the stream is cut into reads) followed by the vector's bytes. Seeds are named `seed-*`:
the root .gitignore keeps those and ignores the inputs fuzzing adds. Rerun after
changing the vectors; it rewrites only `seed-*` files of current vectors.
"""
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
VECTORS = HERE.parent / "proto-spec" / "vectors"
OUT = HERE / "corpus" / "frame_decode"

# Index of each limit in LIMITS (bits 7-6 of the pattern byte).
LIMIT_INDEX = {1024: 0, 1024 * 1024: 1, 64: 2, 0: 3}
WHOLE, BYTE_BY_BYTE, VARYING = 0x00, 0x01, 0x20 | 7


def rows(name, fields):
    for line in (VECTORS / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cells = [c.strip() for c in line.split("|")]
        assert len(cells) == fields, line
        yield cells


def unhex(s):
    return b"" if s == "-" else bytes.fromhex("".join(s.split()))


def write(name, limit, split, body):
    pattern = (LIMIT_INDEX[limit] << 6) | split
    (OUT / f"seed-{name}").write_bytes(bytes([pattern]) + body)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    stream = b""
    for cells in rows("frames.txt", 7):
        frame = unhex(cells[6])
        stream += frame
        write(f"frame-{cells[0]}", 1024 * 1024, WHOLE, frame)
    write("stream-all-frames-whole", 1024 * 1024, WHOLE, stream)
    write("stream-all-frames-bytewise", 1024 * 1024, BYTE_BY_BYTE, stream)
    write("stream-all-frames-varying", 1024, VARYING, stream)
    for cells in rows("bad-frames.txt", 6):
        write(f"bad-{cells[0]}", int(cells[1]), VARYING, unhex(cells[2]))


if __name__ == "__main__":
    main()
