"""A real SMTP server for tests/it/mail.rs: aiosmtpd (PyPI) on a free loopback port.

Prints "listening PORT" once it accepts connections, then appends one JSON line per
message it accepted to --out: {"from", "to", "subject", "headers", "body"} (the body is
the decoded text/plain part). With --fail-first N, the first N messages are answered
--fail-code (default 451, "try again later": a transient failure the daemon must
retry; 550 refuses them for good). Runs until killed.
"""

import argparse
import email
import json
import socket
import sys
import threading
import time
from email import policy

from aiosmtpd.controller import Controller


class Handler:
    def __init__(self, out, fail_first, fail_code):
        self.out = out
        self.fail_left = fail_first
        self.fail_code = fail_code
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            if self.fail_left > 0:
                self.fail_left -= 1
                if self.fail_code >= 500:
                    return f"{self.fail_code} 5.7.1 refused"
                return f"{self.fail_code} 4.3.0 try again later"
        msg = email.message_from_bytes(envelope.content, policy=policy.default)
        part = msg.get_body(preferencelist=("plain",))
        record = {
            "from": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "subject": str(msg.get("subject", "")),
            "headers": {k.lower(): str(v) for k, v in msg.items()},
            "body": part.get_content() if part is not None else "",
        }
        with self.lock, open(self.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
        return "250 OK"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--fail-code", type=int, default=451)
    args = ap.parse_args()
    open(args.out, "a").close()
    port = free_port()
    controller = Controller(
        Handler(args.out, args.fail_first, args.fail_code), hostname="127.0.0.1", port=port
    )
    controller.start()
    print(f"listening {port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    sys.exit(main())
