#!/usr/bin/env python3
"""A Maelstrom broadcast node: `broadcast` stores a message and answers
`broadcast_ok`, `read` answers every message this node knows, `topology` says
who its neighbours are (every other node until one arrives).

A message new to this node goes at once, in a `gossip`, to each neighbour but
the one it came from, and is sent again every 200 ms until that neighbour
answers `gossip_ok` for it; a neighbour that learns it forwards it the same
way, so it crosses lines and grids hop by hop. Every second each node also
pushes its whole set to its neighbours (`sync`, no answer), and a node that
starts asks every other node for theirs, so a node that restarted empty
learns everything again. Whatever partitions and loss did, once the network
heals every node ends up with every message any node stored.

With --bug a new message is forwarded once to each neighbour and never again:
no acknowledgement, no retry, no sync, so a message dropped by a partition or
by loss never reaches the nodes behind it."""
import json
import sys
import threading
import time

BUG = "--bug" in sys.argv[1:]
TICK = 0.2
SYNC_EVERY = 5  # ticks

lock = threading.Lock()
node_id = None
node_ids = []
neighbours = []
messages = set()
# neighbour -> messages sent to it that it has not acknowledged yet
unacked = {}


def send(dest, body):
    print(json.dumps({"src": node_id, "dest": dest, "body": body}), flush=True)


def reply(msg, body):
    body["in_reply_to"] = msg["body"]["msg_id"]
    send(msg["src"], body)


def all_messages():
    try:
        return sorted(messages)
    except TypeError:
        return list(messages)


def set_neighbours(chosen):
    global neighbours, unacked
    neighbours = [n for n in chosen if n != node_id]
    # A new neighbour may lack anything we hold; acknowledgements prune this.
    unacked = {n: set(messages) for n in neighbours}


def learn(ms, came_from):
    """Stores the messages in ms this node lacked and passes those on."""
    new = []
    for m in ms:
        if m not in messages:
            messages.add(m)
            new.append(m)
    if not new:
        return
    for n in neighbours:
        if n == came_from:
            continue
        if not BUG:
            unacked[n].update(new)
        send(n, {"type": "gossip", "messages": new})


def tick():
    ticks = 0
    while True:
        time.sleep(TICK)
        ticks += 1
        with lock:
            for n in neighbours:
                if unacked.get(n):
                    send(n, {"type": "gossip", "messages": list(unacked[n])})
            if ticks % SYNC_EVERY == 0 and messages:
                everything = all_messages()
                for n in neighbours:
                    send(n, {"type": "sync", "messages": everything})


def handle(msg):
    global node_id, node_ids
    body = msg["body"]
    kind = body.get("type")
    src = msg.get("src")
    from_client = str(src).startswith("c") and "msg_id" in body
    if kind == "init":
        node_id = body["node_id"]
        node_ids = list(body.get("node_ids") or [node_id])
        set_neighbours(node_ids)
        reply(msg, {"type": "init_ok"})
        if not BUG:
            for n in neighbours:
                send(n, {"type": "sync_request"})
            threading.Thread(target=tick, daemon=True).start()
    elif node_id is None:
        return
    elif kind == "topology":
        topology = body.get("topology") or {}
        mine = topology.get(node_id)
        if mine:
            # Also those that list us: a link carries gossip both ways.
            chosen = list(mine) + [n for n, ns in topology.items()
                                   if node_id in (ns or []) and n not in mine]
            set_neighbours(chosen)
        else:
            set_neighbours(node_ids)
        reply(msg, {"type": "topology_ok"})
    elif kind == "broadcast":
        learn([body["message"]], None)
        reply(msg, {"type": "broadcast_ok"})
    elif kind == "read":
        reply(msg, {"type": "read_ok", "messages": all_messages()})
    elif kind == "gossip":
        ms = body.get("messages") or []
        learn(ms, src)
        if not BUG:
            send(src, {"type": "gossip_ok", "messages": ms})
    elif kind == "gossip_ok":
        if src in unacked:
            unacked[src].difference_update(body.get("messages") or [])
    elif kind == "sync":
        learn(body.get("messages") or [], src)
    elif kind == "sync_request":
        if not BUG and messages:
            send(src, {"type": "sync", "messages": all_messages()})
    elif from_client:
        reply(msg, {"type": "error", "code": 10,
                    "text": "unsupported request type %r" % kind})


for line in sys.stdin:
    try:
        msg = json.loads(line)
        msg["body"]["type"]
    except (ValueError, KeyError, TypeError):
        print("broadcast: ignoring a line that is not a message: %r" % line[:200],
              file=sys.stderr, flush=True)
        continue
    with lock:
        try:
            handle(msg)
        except Exception as e:  # a malformed message must not stop the node
            print("broadcast: %r handling %r" % (e, line[:200]),
                  file=sys.stderr, flush=True)
