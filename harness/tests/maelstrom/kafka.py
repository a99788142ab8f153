#!/usr/bin/env python3
"""A Maelstrom kafka node whose logs live in the lin-kv service, which every
node reaches whatever the network between nodes does, so the nodes never talk
to each other.

Offset o of key k is the lin-kv key "msg/k/o". `send` claims the first free
offset with one compare-and-set that creates "msg/k/o" holding the message
only if nobody has (create_if_not_exists, `from` a value no message equals);
when another node got there first it tries o+1. The message and its offset are
one atomic write, so a node killed or paused mid-send leaves no gap: the
offsets taken are always 0, 1, ... with none missing, and `poll` reads up from
the asked offset and stops at the first free one, never skipping an offset a
later send could fill. "next/k" is only a hint where to start looking (always
at or below the first free offset). Committed offsets are "commit/k", raised
with compare-and-set, never lowered.

Requests wait on lin-kv's answers without blocking the node: each call to the
service leaves a callback under its msg_id, run when the answer arrives.

With --bug a node numbers each key's messages with its own counter and writes
"msg/k/o" whatever is there, so two nodes (or one node before and after a
restart) hand out the same offset for different messages and the later write
replaces the earlier one."""
import json
import random
import sys

BUG = "--bug" in sys.argv[1:]
POLL_MAX = 20
SEND_TRIES = 1000
# `from` for a cas that must only create: no message or offset equals it.
ABSENT = {"absent": True}
KEY_MISSING = 20
CAS_MISMATCH = 22

node_id = None
# Random start, so a restarted node cannot take a late answer meant for its
# previous process as one of its own.
next_id = random.randrange(1 << 40)
pending = {}
# key -> an offset at or below the first free one, from what this node saw
free_from = {}
# --bug: key -> the next offset this node hands out
counters = {}


def send(dest, body):
    print(json.dumps({"src": node_id, "dest": dest, "body": body}), flush=True)


def reply(msg, body):
    body["in_reply_to"] = msg["body"]["msg_id"]
    send(msg["src"], body)


def call(body, then):
    """Sends body to lin-kv; then(answer body) runs when the answer comes."""
    global next_id
    next_id += 1
    pending[next_id] = then
    send("lin-kv", dict(body, msg_id=next_id))


def slot(key, offset):
    return "msg/%s/%d" % (key, offset)


def saw_taken(key, offset):
    free_from[key] = max(free_from.get(key, 0), offset + 1)


class Request:
    """A client request waiting on `parts` pieces of work; answers once."""

    def __init__(self, msg, parts):
        self.msg = msg
        self.parts = parts
        self.answered = False

    def part_done(self, body):
        self.parts -= 1
        if self.parts <= 0:
            self.answer(body)

    def answer(self, body):
        if not self.answered:
            self.answered = True
            reply(self.msg, body)

    def fail(self, code, text):
        self.answer({"type": "error", "code": code, "text": text})


def unexpected(req, what, answer):
    req.fail(13, "lin-kv answered %s with %s" % (what, json.dumps(answer)))


def handle_send(msg):
    key, value = msg["body"]["key"], msg["body"]["msg"]
    req = Request(msg, 1)
    if BUG:
        offset = counters.get(key, 0)
        counters[key] = offset + 1

        def written(a):
            if a.get("type") == "write_ok":
                req.answer({"type": "send_ok", "offset": offset})
            else:
                unexpected(req, "write", a)

        call({"type": "write", "key": slot(key, offset), "value": value}, written)
        return

    def claim(offset, tries):
        if tries >= SEND_TRIES:
            # No cas succeeded, so nothing was written: a definite failure.
            req.fail(11, "no free offset for %r after %d tries" % (key, tries))
            return

        def claimed(a):
            if a.get("type") == "cas_ok":
                saw_taken(key, offset)
                call({"type": "write", "key": "next/%s" % key, "value": offset + 1},
                     lambda a: None)
                req.answer({"type": "send_ok", "offset": offset})
            elif a.get("code") == CAS_MISMATCH:
                saw_taken(key, offset)
                claim(max(offset + 1, free_from.get(key, 0)), tries + 1)
            else:
                unexpected(req, "cas", a)

        call({"type": "cas", "key": slot(key, offset), "from": ABSENT,
              "to": value, "create_if_not_exists": True}, claimed)

    def hinted(a):
        start = free_from.get(key, 0)
        if a.get("type") == "read_ok" and isinstance(a.get("value"), int):
            start = max(start, a["value"])
        claim(start, 0)

    call({"type": "read", "key": "next/%s" % key}, hinted)


def handle_poll(msg):
    offsets = msg["body"].get("offsets") or {}
    found = {key: [] for key in offsets}
    req = Request(msg, len(offsets))
    if not offsets:
        req.answer({"type": "poll_ok", "msgs": found})
        return

    def read_from(key, offset):
        def got(a):
            if a.get("type") == "read_ok":
                found[key].append([offset, a["value"]])
                if not BUG:
                    saw_taken(key, offset)
                if len(found[key]) < POLL_MAX:
                    read_from(key, offset + 1)
                    return
            elif a.get("code") != KEY_MISSING:
                unexpected(req, "read", a)
                return
            req.part_done({"type": "poll_ok", "msgs": found})

        call({"type": "read", "key": slot(key, offset)}, got)

    for key, offset in offsets.items():
        read_from(key, max(0, int(offset)))


def handle_commit(msg):
    offsets = msg["body"].get("offsets") or {}
    req = Request(msg, len(offsets))
    if not offsets:
        req.answer({"type": "commit_offsets_ok"})
        return

    def raise_to(key, offset):
        name = "commit/%s" % key

        def stored(a):
            if a.get("type") == "cas_ok":
                req.part_done({"type": "commit_offsets_ok"})
            elif a.get("code") in (CAS_MISMATCH, KEY_MISSING):
                raise_to(key, offset)  # another commit got in between: again
            else:
                unexpected(req, "cas", a)

        def current(a):
            if a.get("type") == "read_ok":
                if isinstance(a["value"], int) and a["value"] >= offset:
                    req.part_done({"type": "commit_offsets_ok"})
                else:
                    call({"type": "cas", "key": name, "from": a["value"],
                          "to": offset}, stored)
            elif a.get("code") == KEY_MISSING:
                call({"type": "cas", "key": name, "from": ABSENT, "to": offset,
                      "create_if_not_exists": True}, stored)
            else:
                unexpected(req, "read", a)

        call({"type": "read", "key": name}, current)

    for key, offset in offsets.items():
        raise_to(key, int(offset))


def handle_list(msg):
    keys = msg["body"].get("keys") or []
    committed = {}
    req = Request(msg, len(keys))
    if not keys:
        req.answer({"type": "list_committed_offsets_ok", "offsets": committed})
        return

    def read_commit(key):
        def got(a):
            if a.get("type") == "read_ok":
                committed[key] = a["value"]
            elif a.get("code") != KEY_MISSING:
                unexpected(req, "read", a)
                return
            req.part_done({"type": "list_committed_offsets_ok",
                           "offsets": committed})

        call({"type": "read", "key": "commit/%s" % key}, got)

    for key in keys:
        read_commit(key)


HANDLERS = {
    "send": handle_send,
    "poll": handle_poll,
    "commit_offsets": handle_commit,
    "list_committed_offsets": handle_list,
}


def handle(msg):
    global node_id
    body = msg["body"]
    kind = body.get("type")
    from_client = str(msg.get("src")).startswith("c") and "msg_id" in body
    if kind == "init":
        node_id = body["node_id"]
        reply(msg, {"type": "init_ok"})
    elif body.get("in_reply_to") in pending:
        pending.pop(body["in_reply_to"])(body)
    elif from_client and kind in HANDLERS:
        HANDLERS[kind](msg)
    elif from_client:
        reply(msg, {"type": "error", "code": 10,
                    "text": "unsupported request type %r" % kind})


for line in sys.stdin:
    try:
        msg = json.loads(line)
        msg["body"]["type"]
    except (ValueError, KeyError, TypeError):
        print("kafka: ignoring a line that is not a message: %r" % line[:200],
              file=sys.stderr, flush=True)
        continue
    try:
        handle(msg)
    except Exception as e:  # a malformed message must not stop the node
        print("kafka: %r handling %r" % (e, line[:200]),
              file=sys.stderr, flush=True)
        if str(msg.get("src")).startswith("c") and "msg_id" in msg["body"]:
            reply(msg, {"type": "error", "code": 13, "text": repr(e)})
