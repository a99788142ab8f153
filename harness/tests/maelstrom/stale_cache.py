#!/usr/bin/env python3
"""A broken Maelstrom lin-kv node: like lin_kv_proxy.py, but it remembers what
it wrote and read and answers later reads from that memory, so it never sees
what clients of other nodes wrote since. The harness must call it not
linearizable."""
import json
import sys

node_id = None
next_id = 0
pending = {}
cache = {}


def send(dest, body):
    print(json.dumps({"src": node_id, "dest": dest, "body": body}), flush=True)


for line in sys.stdin:
    msg = json.loads(line)
    body = msg["body"]
    kind = body.get("type")
    if kind == "init":
        node_id = body["node_id"]
        send(msg["src"], {"type": "init_ok", "in_reply_to": body["msg_id"]})
    elif kind == "read" and json.dumps(body["key"]) in cache:
        value = cache[json.dumps(body["key"])]
        send(msg["src"], {"type": "read_ok", "value": value, "in_reply_to": body["msg_id"]})
    elif kind in ("read", "write", "cas"):
        next_id += 1
        pending[next_id] = msg
        send("lin-kv", dict(body, msg_id=next_id))
    elif body.get("in_reply_to") in pending:
        asked = pending.pop(body["in_reply_to"])
        key = json.dumps(asked["body"]["key"])
        if body["type"] == "read_ok":
            cache[key] = body["value"]
        elif body["type"] == "write_ok":
            cache[key] = asked["body"]["value"]
        elif body["type"] == "cas_ok":
            cache[key] = asked["body"]["to"]
        answer = {k: v for k, v in body.items() if k != "msg_id"}
        answer["in_reply_to"] = asked["body"]["msg_id"]
        send(asked["src"], answer)
