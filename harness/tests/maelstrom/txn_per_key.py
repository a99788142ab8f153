#!/usr/bin/env python3
"""A broken Maelstrom txn node: it runs a transaction's micro-ops one at a
time, each key on its own in the lin-kv service (an append is a read and a
compare-and-set of that key alone), so other transactions interleave between
them. Every single step is linearizable; the transaction is not isolated."""
import json
import sys

node_id = None
next_id = 0
# our msg_id -> [client message, index of the micro-op, results so far, value read]
pending = {}


def send(dest, body):
    print(json.dumps({"src": node_id, "dest": dest, "body": body}), flush=True)


def ask(body, state):
    global next_id
    next_id += 1
    pending[next_id] = state
    send("lin-kv", dict(body, msg_id=next_id))


def step(request, i, done):
    txn = request["body"]["txn"]
    if i == len(txn):
        send(request["src"], {"type": "txn_ok", "txn": done,
                              "in_reply_to": request["body"]["msg_id"]})
        return
    f, k, v = txn[i]
    if f == "w":
        ask({"type": "write", "key": str(k), "value": v}, [request, i, done, "w"])
    else:
        ask({"type": "read", "key": str(k)}, [request, i, done, "r"])


for line in sys.stdin:
    msg = json.loads(line)
    body = msg["body"]
    kind = body.get("type")
    if kind == "init":
        node_id = body["node_id"]
        send(msg["src"], {"type": "init_ok", "in_reply_to": body["msg_id"]})
    elif kind == "txn":
        step(msg, 0, [])
    elif body.get("in_reply_to") in pending:
        request, i, done, stage = pending.pop(body["in_reply_to"])
        f, k, v = request["body"]["txn"][i]
        if stage == "w" or (stage == "cas" and kind == "cas_ok"):
            step(request, i + 1, done + [[f, k, v]])
        elif stage == "cas":
            step(request, i, done)
        else:
            current = body.get("value") if kind == "read_ok" else None
            if f == "r":
                step(request, i + 1, done + [[f, k, current]])
            else:
                ask({"type": "cas", "key": str(k), "from": current,
                     "to": list(current or []) + [v],
                     "create_if_not_exists": current is None},
                    [request, i, done, "cas"])
