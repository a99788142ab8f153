#!/usr/bin/env python3
"""A Maelstrom unique-ids node: answers each `generate` with `generate_ok` and
an id no other node, nor this node before or after a restart, hands out. An id
is the node id, a random tag drawn when the process starts (a restarted node's
counter starts again from 1, its tag does not repeat) and a counter, so nodes
need not talk to each other at all. With --bug an id is the counter alone
(1, 2, 3...), so every node hands out the same ids."""
import json
import os
import sys

BUG = "--bug" in sys.argv[1:]

node_id = None
# 64 random bits per process: two incarnations of a node share a tag with
# probability 2^-64.
tag = os.urandom(8).hex()
counter = 0


def send(dest, body):
    print(json.dumps({"src": node_id, "dest": dest, "body": body}), flush=True)


def reply(msg, body):
    body["in_reply_to"] = msg["body"]["msg_id"]
    send(msg["src"], body)


for line in sys.stdin:
    try:
        msg = json.loads(line)
        body = msg["body"]
    except (ValueError, KeyError, TypeError):
        print("unique_ids: ignoring a line that is not a message: %r" % line[:200],
              file=sys.stderr, flush=True)
        continue
    kind = body.get("type")
    from_client = str(msg.get("src", "")).startswith("c") and "msg_id" in body
    if kind == "init":
        node_id = body["node_id"]
        reply(msg, {"type": "init_ok"})
    elif kind == "generate":
        counter += 1
        new_id = counter if BUG else "%s-%s-%d" % (node_id, tag, counter)
        reply(msg, {"type": "generate_ok", "id": new_id})
    elif from_client:
        reply(msg, {"type": "error", "code": 10,
                    "text": "unsupported request type %r" % kind})
