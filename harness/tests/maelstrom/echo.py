#!/usr/bin/env python3
"""A Maelstrom echo node: answers each `echo` with `echo_ok` carrying the same
`echo` value. With --bug it alters the text of one echo in ten (the 3rd, 13th,
23rd... it answers), so a checker comparing replies with requests must fail
it even in a short run."""
import json
import sys

BUG = "--bug" in sys.argv[1:]

node_id = None
echoes = 0


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
        print("echo: ignoring a line that is not a message: %r" % line[:200],
              file=sys.stderr, flush=True)
        continue
    kind = body.get("type")
    from_client = str(msg.get("src", "")).startswith("c") and "msg_id" in body
    if kind == "init":
        node_id = body["node_id"]
        reply(msg, {"type": "init_ok"})
    elif kind == "echo":
        echoes += 1
        text = body.get("echo")
        if BUG and echoes % 10 == 3:
            text = "%s (echoed by %s)" % (text, node_id)
        reply(msg, {"type": "echo_ok", "echo": text})
    elif from_client:
        reply(msg, {"type": "error", "code": 10,
                    "text": "unsupported request type %r" % kind})
