"""smpplib (PyPI) receiving delivery receipts from smsgw's SMPP server.

usage: python smpp_server_receipts.py <port>

Submits two messages on a transmitter bind while the account has no
receiving bind; then binds a receiver, takes the first receipt without
answering and disconnects; binds again and acknowledges every receipt.
Prints one JSON object: the message ids and every receipt seen.
"""
import json
import sys
import time

import smpplib.client
import smpplib.consts
import smpplib.smpp

PORT = int(sys.argv[1])
out = {"ids": [], "unanswered": None, "receipts": []}


def client():
    c = smpplib.client.Client("127.0.0.1", PORT, timeout=15, allow_unknown_opt_params=True)
    c.connect()
    return c


def text(b):
    return b.decode() if isinstance(b, bytes) else b


tx = client()
tx.bind_transmitter(system_id="rcpt", password="pw")
for body in (b"first", b"second"):
    tx.send_message(dest_addr_ton=1, destination_addr="79161234567", source_addr="SMSGW",
                    short_message=body, registered_delivery=1)
    out["ids"].append(text(tx.read_pdu().message_id))
tx.unbind()
tx.disconnect()
time.sleep(1.5)


def answer(command, c, p):
    r = smpplib.smpp.make_pdu(command, client=c)
    r.sequence = p.sequence
    return r


def next_deliver(c):
    while True:
        p = c.read_pdu()
        if p.command == "deliver_sm":
            return p
        if p.command == "enquire_link":
            c.send_pdu(answer("enquire_link_resp", c, p))


def seen(p):
    return {
        "text": text(p.short_message),
        "esm_class": int(p.esm_class),
        "receipted_message_id": text(getattr(p, "receipted_message_id", None)),
        "message_state": getattr(p, "message_state", None),
        "destination_addr": text(p.destination_addr),
    }


rx = client()
rx.bind_receiver(system_id="rcpt", password="pw")
out["unanswered"] = seen(next_deliver(rx))
rx.disconnect()

rx = client()
rx.bind_receiver(system_id="rcpt", password="pw")
while len(out["receipts"]) < 2:
    p = next_deliver(rx)
    out["receipts"].append(seen(p))
    rx.send_pdu(answer("deliver_sm_resp", rx, p))
time.sleep(0.5)
rx.unbind()
rx.disconnect()
print(json.dumps(out))
