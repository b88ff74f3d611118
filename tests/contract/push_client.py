"""An independent push client, written with the `websockets` package, for the push contract
test (push/tests/python_client.rs).

Usage: push_client.py URL TOKEN CHANNEL LAST_SEQ

Connects offering the `strikeflow.v1` subprotocol, authenticates with a first `auth`
message, subscribes to a chain channel, prints `READY` once the subscription is answered
(and the snapshot, if the chain has data, applied), then applies every message until the
one numbered LAST_SEQ. It checks the protocol as a client would: one epoch, `seq` strictly
increasing and, since the test's boundaries are consecutive, each delta numbered one more
than the message before it (a gap would be a lost update). It prints the chain it ends
with as one JSON line: {"summary": ..., "rows": {"<strike>/<side>": row}}.
"""

import asyncio
import json
import sys

from websockets.asyncio.client import connect


def row_key(row):
    # The Rust side keys rows by serde_json's rendering of strike and side.
    strike = row["strike"]
    strike = json.dumps(float(strike))
    return f'{strike}/"{row["option_type"]}"'


async def run(url, token, channel, last_seq):
    async with connect(url, subprotocols=["strikeflow.v1"], open_timeout=10) as ws:
        assert ws.subprotocol == "strikeflow.v1", ws.subprotocol
        await ws.send(json.dumps({"op": "auth", "token": token}))
        reply = json.loads(await ws.recv())
        assert reply["type"] == "authenticated", reply
        await ws.send(json.dumps({"op": "subscribe", "channel": channel}))
        reply = json.loads(await ws.recv())
        assert reply["type"] == "subscribed" and reply["channel"] == channel, reply

        summary, rows = None, {}
        epoch, seq = reply.get("epoch"), reply.get("seq")
        if seq is not None:
            snapshot = json.loads(await ws.recv())
            assert snapshot.get("snapshot") is True, snapshot
            assert snapshot["seq"] == seq and snapshot["epoch"] == epoch, snapshot
            summary = snapshot["data"]["summary"]
            rows = {row_key(r): r for r in snapshot["data"]["strikes"]}
        print("READY", flush=True)

        while seq is None or seq < last_seq:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if msg["type"] != "chain":
                continue
            assert msg["channel"] == channel, msg
            assert not msg.get("snapshot"), f"unexpected snapshot: {msg['seq']}"
            if epoch is None:
                epoch = msg["epoch"]
            assert msg["epoch"] == epoch, (msg["epoch"], epoch)
            if seq is not None:
                assert msg["seq"] == seq + 1, f"seq jumped from {seq} to {msg['seq']}"
            seq = msg["seq"]
            if msg["data"]["summary"] is not None:
                summary = msg["data"]["summary"]
            for r in msg["data"]["strikes"]:
                rows[row_key(r)] = r
        print(json.dumps({"summary": summary, "rows": rows}), flush=True)


if __name__ == "__main__":
    url, token, channel, last_seq = sys.argv[1:5]
    asyncio.run(run(url, token, channel, int(last_seq)))
