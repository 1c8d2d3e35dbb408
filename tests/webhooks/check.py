#!/usr/bin/env python3
"""Checks what tests/webhooks/receiver.py accepted (tests/it/webhooks.rs).

Usage: check.py DELIVERIES.jsonl SECRET

Every delivery's signature must verify with the Standard Webhooks library (PyPI
`standardwebhooks`); a webhook-id seen twice must carry the same body; the distinct
batches, in the order they first arrived, must follow journal order (their ids are
msg_<segment>_<offset>_<events>). Prints a JSON summary on stdout: deliveries, distinct
batches, and every event of the distinct batches in order as [conversation, seq, type].
Exits non-zero with a message on the first violation.
"""
import json
import sys

from standardwebhooks import Webhook


def main():
    path, secret = sys.argv[1], sys.argv[2]
    wh = Webhook(secret)
    bodies = {}
    order = []
    deliveries = 0
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            deliveries += 1
            headers = {
                "webhook-id": d["id"],
                "webhook-timestamp": d["timestamp"],
                "webhook-signature": d["signature"],
            }
            events = wh.verify(d["body"].encode("utf-8"), headers)
            if d["id"] in bodies:
                if bodies[d["id"]] != d["body"]:
                    sys.exit(f"webhook-id {d['id']} came twice with different bodies")
                continue
            bodies[d["id"]] = d["body"]
            order.append((d["id"], events))
    last = None
    out = []
    for wid, events in order:
        _, seg, off, n = wid.split("_")
        at = (int(seg), int(off))
        if last is not None and at <= last:
            sys.exit(f"batch {wid} arrived after a later batch (journal order broken)")
        last = at
        if int(n) != len(events):
            sys.exit(f"batch {wid} holds {len(events)} events")
        for e in events:
            out.append([e["data"]["conversation"], e["data"]["seq"], e["type"]])
    json.dump({"deliveries": deliveries, "distinct": len(order), "events": out}, sys.stdout)


if __name__ == "__main__":
    main()
