"""smpplib (PyPI) as an independent ESME against smsgw's SMPP server.

usage: python smpp_server_client.py <port>

Runs the scenarios in order and prints one JSON object with what each saw:
binds (accepted and refused, with their command_status), GSM-7 and UCS-2
submits with their message_ids, a data_sm, throttling, query_sm, cancel_sm
of one message and of all to a number, and a garbage peer dropped while a
bound client keeps working.
"""
import json
import socket
import struct
import sys
import time

import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.gsm
import smpplib.smpp

PORT = int(sys.argv[1])
TO = "79161234567"
out = {}


def response(c):
    """The next response; receipts (deliver_sm) arriving meanwhile are acknowledged."""
    while True:
        p = c.read_pdu()
        if p.command in ("deliver_sm", "enquire_link"):
            r = smpplib.smpp.make_pdu(p.command + "_resp", client=c)
            r.sequence = p.sequence
            c.send_pdu(r)
            continue
        return p


def client():
    c = smpplib.client.Client("127.0.0.1", PORT, timeout=10, allow_unknown_opt_params=True)
    c.connect()
    return c


def bind_status(kind, system_id, password):
    c = client()
    try:
        getattr(c, "bind_" + kind)(system_id=system_id, password=password)
        return 0, c
    except smpplib.exceptions.PDUError as e:
        c.disconnect()
        return int(e.args[1]), None


def submit(c, text, **kw):
    return submit_to(c, TO, text, **kw)


def submit_to(c, to, text, **kw):
    parts, coding, esm = smpplib.gsm.make_parts(text)
    res = []
    for p in parts:
        c.send_message(
            source_addr_ton=smpplib.consts.SMPP_TON_ALNUM,
            source_addr="SMSGW",
            dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
            dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
            destination_addr=to.lstrip("+"),
            short_message=p,
            data_coding=coding,
            esm_class=esm,
            **kw,
        )
        r = response(c)
        mid = r.message_id.decode() if isinstance(r.message_id, bytes) else r.message_id
        res.append({"command": r.command, "status": int(r.status), "message_id": mid})
    return res


# A transceiver: GSM-7 and Cyrillic UCS-2.
st, trx = bind_status("transceiver", "crm", "secret1")
out["bind_trx"] = st
out["gsm"] = submit(trx, "Hello from smpplib")
out["ucs2"] = submit(trx, "Привет из smpplib")

def data_sm(c, payload):
    """A data_sm to TO carrying `payload` (GSM 7-bit) as message_payload; its response."""
    c.send_pdu(smpplib.smpp.make_pdu(
        "data_sm",
        client=c,
        source_addr="SMSGW",
        dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
        destination_addr=TO,
        data_coding=0,
        message_payload=payload,
    ))
    return response(c)


# data_sm with message_payload.
r = data_sm(trx, b"data sm payload")
out["data_sm"] = {"command": r.command, "status": int(r.status),
                  "message_id": r.message_id.decode() if isinstance(r.message_id, bytes) else r.message_id}
# A payload longer than the site's max_segments (10 by default): 11 segments.
out["too_long"] = int(data_sm(trx, b"x" * 1700).status)

# A transmitter: the second bind of the account; a third is refused.
st, tx = bind_status("transmitter", "crm", "secret1")
out["bind_tx"] = st
out["bind_third"] = bind_status("receiver", "crm", "secret1")[0]
# A receiver may not submit.
out["wrong_password"] = bind_status("transmitter", "crm", "nope")[0]
out["unknown_system_id"] = bind_status("transmitter", "nobody", "x")[0]
out["disallowed_ip"] = bind_status("transmitter", "lan", "pw")[0]
out["disallowed_type"] = bind_status("receiver", "txonly", "pw")[0]

# Throughput 1/s: five at once, some throttled.
st, slow = bind_status("transmitter", "slow", "pw")
statuses = []
for _ in range(5):
    statuses += [r["status"] for r in submit(slow, "throttle me")]
out["throttled"] = statuses
slow.unbind()
slow.disconnect()

# Window 1: five submits written at once; those beyond the window are refused.
st, narrow = bind_status("transmitter", "narrow", "pw")
burst = b""
for i in range(5):
    p = smpplib.smpp.make_pdu("submit_sm", client=narrow, source_addr="SMSGW", dest_addr_ton=1,
                              destination_addr=TO, short_message=b"window %d" % i)
    burst += p.generate()
narrow._socket.sendall(burst)
out["window"] = sorted(int(response(narrow).status) for _ in range(5))
narrow.unbind()
narrow.disconnect()

# Garbage: a peer that sends bytes which are not SMPP is dropped.
g = socket.create_connection(("127.0.0.1", PORT))
g.sendall(b"\x00\x00\x00\x05GARBAGE GARBAGE")
g.settimeout(5)
got = b""
try:
    while True:
        chunk = g.recv(100)
        if not chunk:
            break
        got += chunk
    out["garbage_closed"] = True
except socket.timeout:
    out["garbage_closed"] = False
out["garbage_answer"] = list(struct.unpack(">IIII", got[:16])) if len(got) >= 16 else None

# query_sm until the GSM message is delivered (message_state 2).
state = None
for _ in range(100):
    trx.query_message(message_id=out["gsm"][0]["message_id"], source_addr="SMSGW")
    r = response(trx)
    state = int(r.message_state)
    out["query_final_date"] = r.final_date.decode() if isinstance(r.final_date, bytes) else r.final_date
    if state == 2:
        break
    time.sleep(0.1)
out["query_state"] = state


def cancel(c, message_id, dest=""):
    """A cancel_sm from source SMSGW; an empty message_id cancels all to `dest`."""
    body = b"\0" + message_id.encode() + b"\0" + b"\x05\x00SMSGW\0" + b"\x01\x01" + dest.encode() + b"\0"
    c._socket.sendall(struct.pack(">IIII", 16 + len(body), 0x08, 0, 777) + body)
    while True:
        head = list(struct.unpack(">IIII", c._recv_exact(16)))
        rest = c._recv_exact(head[0] - 16) if head[0] > 16 else b""
        if head[1] == 0x05:  # deliver_sm: acknowledge and read on
            c._socket.sendall(struct.pack(">IIII", 17, 0x80000005, 0, head[3]) + b"\0")
            continue
        return head


# cancel_sm of a scheduled message; again (too late); unknown.
waiting = submit(trx, "now") + submit(trx, "in an hour", schedule_delivery_time="000000010000000R")
out["held"] = waiting
out["cancel"] = cancel(trx, waiting[1]["message_id"])
out["cancel_again"] = cancel(trx, waiting[1]["message_id"])
out["cancel_unknown"] = cancel(trx, "7fffffff")

# cancel_sm without a message_id: every message still queued from SMSGW to
# one number goes; another number's stays; nothing left is RCANCELFAIL; no
# destination is RINVDSTADR.
OTHER = "79161230000"
out["bulk"] = [submit_to(trx, OTHER, "later %d" % i, schedule_delivery_time="000000010000000R")[0] for i in range(3)]
out["bulk_kept"] = submit(trx, "kept", schedule_delivery_time="000000010000000R")[0]
out["cancel_all"] = cancel(trx, "", dest=OTHER)
out["cancel_all_again"] = cancel(trx, "", dest=OTHER)
out["cancel_all_no_dest"] = cancel(trx, "")

# The others are unharmed.
out["after_garbage"] = submit(tx, "still here")
trx.unbind()
trx.disconnect()
tx.unbind()
tx.disconnect()
print(json.dumps(out))
