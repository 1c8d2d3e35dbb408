#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets.

- frame_decode: from the wire spec's test vectors (../proto-spec/vectors/*.txt) into
  corpus/frame_decode/. Each seed is one pattern byte (see
  fuzz_targets/frame_decode.rs: payload limit and how the stream is cut into reads)
  followed by the vector's bytes.
- message_decode: into corpus/message_decode/, each seed being the kind byte followed
  by the payload. From the message vectors (../proto-spec/vectors/*messages.jsonl:
  valid, invalid and non-canonical payloads; those over 4 KiB are left out so that
  libFuzzer keeps its default 4096-byte input limit), and by running the Rust example
  examples/message_seeds.rs (rkyv archives are easiest made by the code that reads
  them), which writes a default and a fully populated message of every kind, and
  messages breaking each protocol bound.
- json_message: into corpus/json_message/, each seed being one JSON text of the JSON
  vectors (../proto-spec/vectors/json-*.jsonl: canonical, non-canonical and refused
  texts; those over 4 KiB are left out, as above).

Usage: make_seeds.py [frame_decode] [message_decode] [json_message]  (no argument: all)

Seeds are named `seed-*`: the root .gitignore keeps those and ignores the inputs
fuzzing adds. Rerun after changing the vectors or the message types; it rewrites only
the `seed-*` files it makes (a stale one of a renamed seed must be deleted by hand).
"""
import json
import pathlib
import subprocess
import sys

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


def frame_seeds():
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


MESSAGE_OUT = HERE / "corpus" / "message_decode"
# Payloads above this are not seeds: a larger seed raises libFuzzer's input limit.
MAX_SEED_PAYLOAD = 4096 - 1


def message_vector_seeds():
    MESSAGE_OUT.mkdir(parents=True, exist_ok=True)
    for file, prefix in [
        ("messages.jsonl", "vector"),
        ("bad-messages.jsonl", "vector-bad"),
        ("noncanonical-messages.jsonl", "vector-noncanonical"),
    ]:
        path = VECTORS / file
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            case = json.loads(line)
            frame = bytes.fromhex(case["frame"])
            kind = frame[3]
            length = int.from_bytes(frame[8:12], "little")
            payload = frame[16 : 16 + length]
            assert len(payload) == length, case["name"]
            if length > MAX_SEED_PAYLOAD:
                continue
            (MESSAGE_OUT / f"seed-{prefix}-{case['name']}").write_bytes(
                bytes([kind]) + payload
            )


def message_seeds():
    message_vector_seeds()
    # A plain (stable, uninstrumented) build of the fuzz crate's example.
    subprocess.run(
        [
            "cargo", "run", "--quiet",
            "--manifest-path", str(HERE / "Cargo.toml"),
            "--example", "message_seeds", "--",
            str(MESSAGE_OUT),
        ],
        check=True,
    )


JSON_OUT = HERE / "corpus" / "json_message"


def json_seeds():
    JSON_OUT.mkdir(parents=True, exist_ok=True)
    for file, prefix in [
        ("json-messages.jsonl", "vector"),
        ("json-noncanonical-messages.jsonl", "vector-noncanonical"),
        ("json-bad-messages.jsonl", "vector-bad"),
    ]:
        for line in (VECTORS / file).read_text(encoding="utf-8").splitlines():
            case = json.loads(line)
            text = case["json"].encode("utf-8")
            if len(text) > MAX_SEED_PAYLOAD:
                continue
            (JSON_OUT / f"seed-{prefix}-{case['name']}").write_bytes(text)


TARGETS = {
    "frame_decode": frame_seeds,
    "message_decode": message_seeds,
    "json_message": json_seeds,
}


def main(args):
    for name in args or TARGETS:
        if name not in TARGETS:
            sys.exit(f"unknown target {name!r}; known: {', '.join(TARGETS)}")
        TARGETS[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
