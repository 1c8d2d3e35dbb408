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

- http_head, ws_frames: hand-written request heads (an upgrade, a plain GET, bad
  ones) and client frame streams (fragments with a ping between them, a close, bad
  frames), each behind the target's pattern byte (see their fuzz_targets/*.rs).

- proxy_header: PROXY protocol v1/v2 headers (haproxy's forms, TLVs, LOCAL, bad
  ones) behind the target's two-byte bound.

- auth_token, visitor_token, console_login, admin_http, library_files, config_toml:
  signed and raw tokens, Authorization headers, visitor-token and login bodies,
  admin request heads, the first entries of ../tests/data/{faq,canned,spam}.toml (as
  TOML and as JSON), and configurations (../tuning/switchboard.toml without comments,
  small ones), each behind its target's pattern byte where it has one.

Usage: make_seeds.py [proxy_header] [frame_decode] [message_decode] [json_message] [http_head]
[ws_frames] (no argument: all)

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


HTTP_OUT = HERE / "corpus" / "http_head"
WS_OUT = HERE / "corpus" / "ws_frames"

UPGRADE = (
    b"GET /ws?site=demo HTTP/1.1\r\nHost: gw.example:7810\r\nUpgrade: websocket\r\n"
    b"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Origin: http://gw.example:7810\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: chat, switchboard.v1.json\r\n\r\n"
)


def http_seeds():
    HTTP_OUT.mkdir(parents=True, exist_ok=True)
    heads = {
        "upgrade": UPGRADE,
        "upgrade-v8": UPGRADE.replace(b"Version: 13", b"Version: 8"),
        "upgrade-evil-origin": UPGRADE.replace(b"http://gw.example:7810", b"https://evil.example"),
        "get": b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n",
        "head-10": b"HEAD / HTTP/1.0\r\n\r\n",
        "post-chunked": b"POST /api HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "te-and-cl": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        "two-hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "http2": b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
    }
    for name, head in heads.items():
        # 0x20: default max_bytes, 32 headers; 0x42: 64 bytes, 2 headers.
        (HTTP_OUT / f"seed-{name}").write_bytes(bytes([0x20]) + head)
    (HTTP_OUT / "seed-upgrade-small-limits").write_bytes(bytes([0x42]) + UPGRADE)


def client_frame(fin, op, payload, mask=b"\x12\x34\x56\x78"):
    head = bytes([(0x80 if fin else 0) | op])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_seeds():
    WS_OUT.mkdir(parents=True, exist_ok=True)
    text = "κόσμε".encode()
    streams = {
        "messages": client_frame(True, 1, b"hello") + client_frame(True, 2, bytes(range(200)))
        + client_frame(True, 1, b""),
        "fragments-ping": client_frame(False, 1, text[:3]) + client_frame(True, 9, b"ping")
        + client_frame(False, 0, text[3:7]) + client_frame(True, 10, b"")
        + client_frame(True, 0, text[7:]),
        "close": client_frame(True, 1, b"bye") + client_frame(True, 8, b"\x03\xe8done"),
        "close-empty": client_frame(True, 8, b""),
        "close-bad-code": client_frame(True, 8, b"\x03\xec"),
        "bad-utf8": client_frame(False, 1, b"ok") + client_frame(True, 0, b"\xed\xa0\x80"),
        "unmasked": b"\x81\x02hi",
        "reserved": client_frame(True, 0x41, b"x") + client_frame(True, 3, b""),
        "long-ping": client_frame(True, 9, bytes(126)),
        # Seeds stay under libFuzzer's default 4096-byte input limit; the 8-byte length
        # form appears here non-minimally encoded (allowed on receipt).
        "big": client_frame(True, 2, bytes(3000)),
        "len64": b"\x82\xff" + (5).to_bytes(8, "big") + b"\x12\x34\x56\x78" + bytes(5),
    }
    for name, stream in streams.items():
        # 0x00: 1 MiB limit, one read; 0x07: reads of 7 bytes; 0x41: 125-byte limit, byte by byte.
        for pattern in (0x00, 0x07, 0x41):
            if name == "big" and pattern != 0x00:
                continue
            (WS_OUT / f"seed-{name}-{pattern:02x}").write_bytes(bytes([pattern]) + stream)


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


PROXY_OUT = HERE / "corpus" / "proxy_header"
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_seeds():
    """PROXY headers (v1 and v2, as haproxy sends them, with TLVs, LOCAL, bad ones),
    each behind the target's two-byte max_bytes (1024) and followed by a frame's start."""
    PROXY_OUT.mkdir(parents=True, exist_ok=True)
    inet = bytes([10, 0, 0, 5, 10, 0, 0, 1, 0x9C, 0x40, 0x1E, 0x14])
    inet6 = bytes(range(32)) + b"\x9c\x40\x1e\x14"
    tlv = b"\x04\x00\x03abc" + b"\xea\x00\x08vpce-123"
    headers = {
        "v1-tcp4": b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 7700\r\n",
        "v1-tcp6": b"PROXY TCP6 2001:db8::7 ::1 56324 7700\r\n",
        "v1-unknown": b"PROXY UNKNOWN\r\n",
        "v1-bad-port": b"PROXY TCP4 192.0.2.7 198.51.100.1 056324 7700\r\n",
        "v2-inet": V2_SIG + b"\x21\x11" + len(inet).to_bytes(2, "big") + inet,
        "v2-inet6": V2_SIG + b"\x21\x21" + len(inet6).to_bytes(2, "big") + inet6,
        "v2-inet-tlvs": V2_SIG + b"\x21\x11" + (len(inet) + len(tlv)).to_bytes(2, "big") + inet + tlv,
        "v2-local": V2_SIG + b"\x20\x00\x00\x00",
        "v2-unspec": V2_SIG + b"\x21\x00\x00\x00",
        "v2-bad-tlv": V2_SIG + b"\x21\x11\x00\x10" + inet + b"\x04\x00\x09\x00",
    }
    for name, header in headers.items():
        (PROXY_OUT / f"seed-{name}").write_bytes(b"\x04\x00" + header + b"SWB1")


def jwt(key, header, claims):
    import base64
    import hashlib
    import hmac

    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=")

    signing = b64(header) + b"." + b64(claims)
    sig = hmac.new(key.encode(), signing, hashlib.sha256).digest()
    return signing + b"." + b64(sig)


def seeds(target, items):
    out = HERE / "corpus" / target
    out.mkdir(parents=True, exist_ok=True)
    for name, body in items.items():
        (out / f"seed-{name}").write_bytes(body)


K1 = "token-key-0123456789abcdef0123456789abcdef"
HS_K1 = b'{"alg":"HS256","typ":"JWT","kid":"k1"}'
AGENT = b'{"sub":"agent-7","role":"agent","name":"Ann","groups":["sales","en"],"tenant":"acme","max_concurrent":4,"exp":1900000000,"nbf":1700000000,"iat":1700000000}'


def auth_seeds():
    """Mode byte 0: token text / Authorization header; 1: header 0xFF claims, signed."""
    seeds("auth_token", {
        "signed-agent": b"\x01" + HS_K1 + b"\xff" + AGENT,
        "signed-visitor-k2": b"\x03" + b'{"alg":"HS256","kid":"k2"}\xff{"sub":"v:shop:x","role":"visitor","exp":1800000060}',
        "signed-expired": b"\x01" + b'{"alg":"HS256"}\xff{"sub":"a","role":"admin","exp":1700000000}',
        "signed-float-exp": b"\x01" + b'{"alg":"HS256"}\xff{"sub":"a","role":"bot","exp":1.9e9,"nbf":null}',
        "signed-none-alg": b"\x01" + b'{"alg":"none"}\xff{"sub":"a","role":"admin","exp":1900000000}',
        "signed-unknown-kid": b"\x01" + b'{"alg":"HS256","kid":"k9"}\xff' + AGENT,
        "token-text": b"\x00" + jwt(K1, HS_K1, AGENT),
        "bearer-jwt": b"\x00Bearer " + jwt(K1, HS_K1, AGENT),
        "bearer-key": b"\x00Bearer sbk_ops_s3cret-of-the-ops-key",
        "bearer-key-no-secret": b"\x00bearer   sbk_ops  ",
        "basic": b"\x00Basic YWxhZGRpbjpvcGVuc2VzYW1l",
    })
    seeds("visitor_token", {
        "new": b"\x00{}",
        "returning": b'\x01{"visitor_id":"AAAAAAAAAAAAAAAAAAAAAA","visitor_key":"x"}',
        "returning-bad-key": b'\x00{"visitor_id":"abc","visitor_key":"MqS6IkYARm1IydCVhNO5Ncv4xCCSuLj8wWC6z-8Y0PM"}',
        "identified": b'\x02{"user_id":"user-42","user_hash":"","name":"Ann \xc3\xa9","email":"ann@example.com"}',
        "identified-off": b'\x0a{"user_id":"user-42"}',
        "anonymous-off": b"\x04{}",
        "unknown-field": b'\x00{"visitor_id":"a","extra":1}',
        "control-char": b'\x02{"user_id":"a\\u0000b"}',
    })
    seeds("console_login", {
        "ok": b'{"username":"alice","password":"correct horse"}',
        "escaped": b'{"username":"al\\u00e9","password":"p\\"w"}',
        "empty": b'{"username":"","password":"x"}',
        "control": b'{"username":"a\\nINFO forged","password":"x"}',
        "extra": b'{"username":"a","password":"b","admin":true}',
        "wrong-type": b'{"username":1,"password":"b"}',
        "not-json": b"username=alice&password=pw",
    })
    seeds("admin_http", {
        "metrics": b"\x20GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n",
        "readyz-head": b"\x20HEAD /readyz?verbose=1 HTTP/1.0\r\n\r\n",
        "post": b"\x20POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        "partial": b"\x20GET /healthz HTTP/1.1\r\nHost:",
        "too-large": b"\x01GET /metrics HTTP/1.1\r\nHost: 0123456789012345678901234567890123456789\r\n\r\n",
        "garbage": b"\x20\x16\x03\x01\x00\xa5\x01\x00\x00\xa1",
    })


def library_seeds():
    """The first entries of the sample libraries, TOML (pattern 0/1/2) and JSON (4/5/6)."""
    import tomllib
    data = HERE.parent / "tests" / "data"
    items = {}
    for kind, (name, key) in enumerate([("faq", "entry"), ("canned", "reply"), ("spam", "rule")]):
        text = (data / f"{name}.toml").read_text()
        marker = f"[[{key}]]"
        cut = text.split(marker)
        toml_text = marker.join(cut[:4])
        items[f"{name}-toml"] = bytes([kind]) + toml_text.encode()
        doc = tomllib.loads(toml_text)
        items[f"{name}-json"] = bytes([kind | 4]) + json.dumps(doc, ensure_ascii=False).encode()
        items[f"{name}-toml-small-bounds"] = bytes([kind | 8]) + toml_text.encode()
    items["faq-duplicate-id"] = b'\x00[[entry]]\nid = "a"\nquestions = ["q"]\nanswer = "x"\n[[entry]]\nid = "a"\nquestions = ["r"]\nanswer = "y"\n'
    items["spam-empty-keyword"] = b'\x06{"rule":[{"name":"r","action":"block","keywords":[""],"block_for":"0s"}]}'
    seeds("library_files", items)
    text = (HERE.parent / "tuning" / "switchboard.toml").read_text()
    bare = "\n".join(
        line for line in text.splitlines() if line.strip() and not line.strip().startswith("#")
    )
    seeds("config_toml", {
        "tuning": bare.encode() + b"\n",
        "empty": b"",
        "minimal": b'state_dir = "/tmp/x"\n[listeners.client]\naddr = "127.0.0.1:7700"\n',
        "keys": b'[[auth.keys]]\nkid = "k1"\nsecret = "0123456789abcdef0123456789abcdef"\n[[api.keys]]\nid = "ops"\ntenant = "acme"\nsecret_sha256 = "00"\nscopes = ["conversations:read"]\n',
        "bad-duration": b'[limits]\nstall_timeout = "10 parsecs"\n',
    })


TARGETS = {
    "auth_token": auth_seeds,
    "library_files": library_seeds,
    "proxy_header": proxy_seeds,
    "frame_decode": frame_seeds,
    "message_decode": message_seeds,
    "http_head": http_seeds,
    "ws_frames": ws_seeds,
    "json_message": json_seeds,
}


def main(args):
    for name in args or TARGETS:
        if name not in TARGETS:
            sys.exit(f"unknown target {name!r}; known: {', '.join(TARGETS)}")
        TARGETS[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
