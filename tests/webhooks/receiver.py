#!/usr/bin/env python3
"""A webhook receiver that misbehaves on purpose (tests/it/webhooks.rs).

Answers each POST, by a seeded random draw: 500 (--fail), a hang past the sender's
timeout then 503 (--slow), a connection closed without an answer (--drop), a delivery
recorded but its answer lost (--lost: the sender retries what was already taken), or
else 204 after appending the delivery to --out as a JSON line:
{"id": webhook-id, "timestamp": ..., "signature": ..., "body": raw body as text}.
Prints "listening PORT" on stdout once bound. Runs until killed.

With --bench it answers every POST 204 and records per event the lag (now - the event's
time_ms) instead; `benches/webhooks.sh` reads those figures.
"""
import argparse
import json
import random
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True)
    p.add_argument("--fail", type=float, default=0.0)
    p.add_argument("--slow", type=float, default=0.0)
    p.add_argument("--slow-seconds", type=float, default=2.0)
    p.add_argument("--drop", type=float, default=0.0)
    p.add_argument("--lost", type=float, default=0.0)
    p.add_argument("--bench", action="store_true")
    args = p.parse_args()

    rng = random.Random(args.seed)
    lock = threading.Lock()
    out = open(args.out, "a", buffering=1)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            n = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(n)
            if len(body) < n:
                # The sender died mid-request (the test SIGKILLs the daemon): a body cut
                # short is no delivery, as for any HTTP server.
                self.close_connection = True
                return
            if args.bench:
                now = time.time() * 1000.0
                lags = [now - int(e["data"]["time_ms"]) for e in json.loads(body)]
                with lock:
                    out.write(json.dumps({"at": now, "lags": lags}) + "\n")
                self.answer(204)
                return
            with lock:
                draw = rng.random()
            if draw < args.drop:
                # No answer: the sender sees the connection break.
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            draw -= args.drop
            if draw < args.slow:
                time.sleep(args.slow_seconds)
                self.answer(503)
                return
            draw -= args.slow
            if draw < args.fail:
                self.answer(500)
                return
            record = {
                "id": self.headers.get("webhook-id"),
                "timestamp": self.headers.get("webhook-timestamp"),
                "signature": self.headers.get("webhook-signature"),
                "body": body.decode("utf-8"),
            }
            with lock:
                out.write(json.dumps(record) + "\n")
            if draw < args.fail + args.lost:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            self.answer(204)

        def answer(self, status):
            try:
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()
            except OSError:
                pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print("listening", server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
