"""A real SMTP server for tests/it/mail.rs: aiosmtpd (PyPI) on a free loopback port.

Prints "listening PORT" once it accepts connections, then appends one JSON line per
message it accepted to --out: {"from", "to", "subject", "headers", "body"} (the body is
the decoded text/plain part). With --fail-first N, the first N messages are answered
--fail-code (default 451, "try again later": a transient failure the daemon must
retry; 550 refuses them for good). Runs until killed.

TLS and authentication, for the daemon's `email.tls` modes and credentials:
  --starttls CERT KEY       offers STARTTLS and refuses mail without it
                            (aiosmtpd require_starttls)
  --implicit-tls CERT KEY   TLS from the first byte (SMTPS)
  --auth USER:PASS          AUTH required, only over TLS; each attempt is appended to
                            OUT.auth as {"user", "ok", "tls"}
Each message's line then also says "tls" (the connection was TLS), "starttls" (the
client upgraded it) and "user" (who logged in, or null).
"""

import argparse
import email
import json
import socket
import ssl
import sys
import threading
import time
import warnings
from email import policy

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler:
    def __init__(self, out, fail_first, fail_code):
        self.out = out
        self.fail_left = fail_first
        self.fail_code = fail_code
        self.lock = threading.Lock()

    def handle_STARTTLS(self, server, session, envelope):
        # Called (not awaited) once the upgrade's handshake is done.
        session.switchboard_starttls = True
        return True

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
            "tls": is_tls(server),
            "starttls": getattr(session, "switchboard_starttls", False),
            "user": session.auth_data.login.decode()
            if isinstance(session.auth_data, LoginPassword)
            else None,
        }
        with self.lock, open(self.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
        return "250 OK"


def is_tls(server):
    return server.transport.get_extra_info("ssl_object") is not None


class Authenticator:
    """Takes USER with PASS only; logs every attempt."""

    def __init__(self, log, user, password):
        self.log = log
        self.user = user
        self.password = password
        self.lock = threading.Lock()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode(errors="replace")
        ok = user == self.user and auth_data.password.decode(errors="replace") == self.password
        with self.lock, open(self.log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"user": user, "ok": ok, "tls": is_tls(server)}) + "\n")
            f.flush()
        # A failure not handled here: aiosmtpd answers 535 5.7.8.
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


def server_context(cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    # aiosmtpd's own use of its deprecated Session.login_data, not ours.
    warnings.filterwarnings("ignore", message="Session.login_data is deprecated")
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--fail-code", type=int, default=451)
    ap.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--implicit-tls", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--auth", metavar="USER:PASS")
    args = ap.parse_args()
    open(args.out, "a").close()
    port = free_port()
    smtp = {}
    if args.starttls:
        smtp.update(tls_context=server_context(*args.starttls), require_starttls=True)
    if args.implicit_tls:
        smtp.update(ssl_context=server_context(*args.implicit_tls))
    if args.auth:
        user, _, password = args.auth.partition(":")
        log = args.out + ".auth"
        open(log, "a").close()
        smtp.update(
            auth_required=True,
            auth_require_tls=True,
            authenticator=Authenticator(log, user, password),
        )
    controller = Controller(
        Handler(args.out, args.fail_first, args.fail_code),
        hostname="127.0.0.1",
        port=port,
        **smtp,
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
