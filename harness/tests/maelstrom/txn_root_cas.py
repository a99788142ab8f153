#!/usr/bin/env python3
"""A Maelstrom txn node (txn-list-append and txn-rw-register) that keeps the
whole database as one value in the lin-kv service: each transaction reads it,
applies itself to a copy and installs the copy with one compare-and-set,
starting over when another node got there first. One cas per transaction
makes the store strictly serializable, whatever the network between nodes."""
import json
import sys

node_id = None
next_id = 0
# our msg_id -> [stage, client message, database read]
pending = {}


def send(dest, body):
    print(json.dumps({"src": node_id, "dest": dest, "body": body}), flush=True)


def ask(body, state):
    global next_id
    next_id += 1
    pending[next_id] = state
    send("lin-kv", dict(body, msg_id=next_id))


def begin(request):
    ask({"type": "read", "key": "root"}, ["read", request, None])


def apply(db, txn):
    db = dict(db)
    done = []
    for f, k, v in txn:
        key = str(k)
        if f == "r":
            done.append([f, k, db.get(key)])
        elif f == "append":
            db[key] = list(db.get(key) or []) + [v]
            done.append([f, k, v])
        else:
            db[key] = v
            done.append([f, k, v])
    return db, done


for line in sys.stdin:
    msg = json.loads(line)
    body = msg["body"]
    kind = body.get("type")
    if kind == "init":
        node_id = body["node_id"]
        send(msg["src"], {"type": "init_ok", "in_reply_to": body["msg_id"]})
    elif kind == "txn":
        begin(msg)
    elif body.get("in_reply_to") in pending:
        stage, request, before = pending.pop(body["in_reply_to"])
        if stage == "read":
            db = body.get("value") if kind == "read_ok" else None
            after, done = apply(db or {}, request["body"]["txn"])
            ask(
                {"type": "cas", "key": "root", "from": db, "to": after,
                 "create_if_not_exists": db is None},
                ["cas", request, done],
            )
        elif kind == "cas_ok":
            send(request["src"], {"type": "txn_ok", "txn": before,
                                  "in_reply_to": request["body"]["msg_id"]})
        else:
            begin(request)
