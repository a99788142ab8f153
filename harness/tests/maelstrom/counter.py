#!/usr/bin/env python3
"""A Maelstrom g-counter and pn-counter node: `add` {delta} answers `add_ok`,
`read` answers the counter's value. The counter is a state-based PN-counter:
two maps, P for increments and N for decrements, from contributor to total,
merged by taking each contributor's maximum; the value is sum(P) - sum(N).
Every 200 ms a node sends both maps to every other node, and its own entry
also goes out on each add.

A contributor is one process, the node id and a random tag: a restarted node
starts from zero under a new name instead of overwriting its old entry with a
smaller one, and that old entry lives on in the other nodes' maps and comes
back to it with their next round. A node's own entry is only ever written by
itself.

With --bug a node merges the entry a peer sends for itself (the contributor
named in the message's `from`) by adding it to its copy instead of taking the
maximum, so every round counts that peer's adds again: reads exceed what was
added (for a pn-counter, drift by the peers' net totals). A node never takes
its own entry from others, so the error grows with time, by each peer's total
per round, not exponentially, and stays a modest integer. It needs two nodes
or more: a lone node has nobody to merge with."""
import json
import os
import sys
import threading
import time

BUG = "--bug" in sys.argv[1:]
TICK = 0.2

lock = threading.Lock()
node_id = None
me = None
others = []
plus = {}
minus = {}


def send(dest, body):
    print(json.dumps({"src": node_id, "dest": dest, "body": body}), flush=True)


def reply(msg, body):
    body["in_reply_to"] = msg["body"]["msg_id"]
    send(msg["src"], body)


def share(p, n):
    for o in others:
        send(o, {"type": "replicate", "from": me, "p": p, "n": n})


def merge(mine, theirs, owner):
    for k, v in theirs.items():
        if k == me or not isinstance(v, int):
            continue
        if BUG and k == owner:
            mine[k] = mine.get(k, 0) + v
        else:
            mine[k] = max(mine.get(k, 0), v)


def tick():
    while True:
        time.sleep(TICK)
        with lock:
            if plus or minus:
                share(plus, minus)


def handle(msg):
    global node_id, me, others
    body = msg["body"]
    kind = body.get("type")
    src = str(msg.get("src"))
    from_client = src.startswith("c") and "msg_id" in body
    if kind == "init":
        node_id = body["node_id"]
        me = "%s-%s" % (node_id, os.urandom(8).hex())
        others = [n for n in body.get("node_ids") or [] if n != node_id]
        reply(msg, {"type": "init_ok"})
        threading.Thread(target=tick, daemon=True).start()
    elif node_id is None:
        return
    elif kind == "add":
        delta = body["delta"]
        if delta >= 0:
            plus[me] = plus.get(me, 0) + delta
        else:
            minus[me] = minus.get(me, 0) - delta
        reply(msg, {"type": "add_ok"})
        share({me: plus.get(me, 0)}, {me: minus.get(me, 0)})
    elif kind == "read":
        reply(msg, {"type": "read_ok",
                    "value": sum(plus.values()) - sum(minus.values())})
    elif kind == "replicate":
        merge(plus, body.get("p") or {}, body.get("from"))
        merge(minus, body.get("n") or {}, body.get("from"))
    elif from_client:
        reply(msg, {"type": "error", "code": 10,
                    "text": "unsupported request type %r" % kind})


for line in sys.stdin:
    try:
        msg = json.loads(line)
        msg["body"]["type"]
    except (ValueError, KeyError, TypeError):
        print("counter: ignoring a line that is not a message: %r" % line[:200],
              file=sys.stderr, flush=True)
        continue
    with lock:
        try:
            handle(msg)
        except Exception as e:  # a malformed message must not stop the node
            print("counter: %r handling %r" % (e, line[:200]),
                  file=sys.stderr, flush=True)
