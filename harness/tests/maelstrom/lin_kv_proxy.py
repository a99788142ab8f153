#!/usr/bin/env python3
"""A Maelstrom lin-kv node that keeps no state: every read, write and cas from a
client goes to the lin-kv service and the service's answer goes back, so it is
linearizable whatever the network between nodes does. Given another service's
name (seq-kv, lww-kv) it proxies to that one instead, which promises less: the
checker must then find stale reads."""
import json
import sys

service = sys.argv[1] if len(sys.argv) > 1 else "lin-kv"

node_id = None
next_id = 0
pending = {}


def send(dest, body):
    print(json.dumps({"src": node_id, "dest": dest, "body": body}), flush=True)


for line in sys.stdin:
    msg = json.loads(line)
    body = msg["body"]
    kind = body.get("type")
    if kind == "init":
        node_id = body["node_id"]
        send(msg["src"], {"type": "init_ok", "in_reply_to": body["msg_id"]})
    elif kind in ("read", "write", "cas"):
        next_id += 1
        pending[next_id] = msg
        send(service, dict(body, msg_id=next_id))
    elif body.get("in_reply_to") in pending:
        asked = pending.pop(body["in_reply_to"])
        answer = {k: v for k, v in body.items() if k != "msg_id"}
        answer["in_reply_to"] = asked["body"]["msg_id"]
        send(asked["src"], answer)
