#!/usr/bin/env python3
"""A Maelstrom g-set node: `add` puts an element in a grow-only set and answers
`add_ok`, `read` answers the set this node holds. The set is a state-based
CRDT: every 200 ms a node sends its whole set to every other node, which merges
it by union, and a new element also goes out at once. Union never loses an
element, so once the network heals every node holds every element any node
took, a restarted (empty) node included.

With --bug new elements wait for the next round, and every fifth state a node
receives replaces its set instead of being merged into it: elements it took
since its last round, which no other node has yet, are gone from every node.
That takes two nodes or more (a lone node receives no states) but no faults:
the rounds' own timing loses elements."""
import json
import sys
import threading
import time

BUG = "--bug" in sys.argv[1:]
TICK = 0.2

lock = threading.Lock()
node_id = None
others = []
# canonical JSON of an element -> the element
elements = {}
merges = 0


def send(dest, body):
    print(json.dumps({"src": node_id, "dest": dest, "body": body}), flush=True)


def reply(msg, body):
    body["in_reply_to"] = msg["body"]["msg_id"]
    send(msg["src"], body)


def key(e):
    return json.dumps(e, sort_keys=True)


def tick():
    while True:
        time.sleep(TICK)
        with lock:
            if elements:
                value = list(elements.values())
                for n in others:
                    send(n, {"type": "replicate", "value": value})


def handle(msg):
    global node_id, others, elements, merges
    body = msg["body"]
    kind = body.get("type")
    from_client = str(msg.get("src")).startswith("c") and "msg_id" in body
    if kind == "init":
        node_id = body["node_id"]
        others = [n for n in body.get("node_ids") or [] if n != node_id]
        reply(msg, {"type": "init_ok"})
        threading.Thread(target=tick, daemon=True).start()
    elif node_id is None:
        return
    elif kind == "add":
        e = body["element"]
        elements[key(e)] = e
        reply(msg, {"type": "add_ok"})
        if not BUG:
            for n in others:
                send(n, {"type": "replicate", "value": [e]})
    elif kind == "read":
        reply(msg, {"type": "read_ok", "value": list(elements.values())})
    elif kind == "replicate":
        incoming = {key(e): e for e in body.get("value") or []}
        merges += 1
        if BUG and merges % 5 == 0:
            elements = incoming
        else:
            elements.update(incoming)
    elif from_client:
        reply(msg, {"type": "error", "code": 10,
                    "text": "unsupported request type %r" % kind})


for line in sys.stdin:
    try:
        msg = json.loads(line)
        msg["body"]["type"]
    except (ValueError, KeyError, TypeError):
        print("g_set: ignoring a line that is not a message: %r" % line[:200],
              file=sys.stderr, flush=True)
        continue
    with lock:
        try:
            handle(msg)
        except Exception as e:  # a malformed message must not stop the node
            print("g_set: %r handling %r" % (e, line[:200]),
                  file=sys.stderr, flush=True)
