"""smpplib (PyPI) submitting long messages in parts to smsgw's SMPP server.

usage: python smpp_server_multipart.py <port> <scenario>

Scenarios (each prints one JSON object with what it saw):
  main      on a transceiver of account "parts": a Cyrillic UCS-2 text in 3
            UDH parts (8-bit reference; an emoji's surrogate pair split
            across parts 1 and 2) with registered_delivery=1, a GSM-7 text in
            SAR parts sent out of order with part 1 twice (and part 2 again
            once joined), a 16-bit UDH set whose second part has another
            data_coding, an incomplete set
            (2 of 3 parts) with registered_delivery=1, and a whole message
            with registered_delivery=0 (queried until DELIVERED) followed by
            one with 1; then reads receipts until the rd=1 message's and the
            incomplete set's have come, acknowledging each.
  first     part 1 of a 2-part SAR set (reference 4242) on account "parts".
  second    part 2 of that set.
"""
import json
import sys
import time

import smpplib.client
import smpplib.consts
import smpplib.smpp

PORT = int(sys.argv[1])
SCENARIO = sys.argv[2]
TO = "79161234567"
out = {"receipts": []}

CYRILLIC = ("Съешь же ещё этих мягких французских булок, да выпей чаю. 😀 Широкая электрификация южных "
            "губерний даст мощный толчок подъёму сельского хозяйства. Конец.")
GSM = "The quick brown fox jumps over the lazy dog, 0123456789. " * 4
RESTART = ("Part one before the restart. ", "Part two after it.")


def text(b):
    return b.decode() if isinstance(b, bytes) else b


def client():
    c = smpplib.client.Client("127.0.0.1", PORT, timeout=15, allow_unknown_opt_params=True)
    c.connect()
    c.bind_transceiver(system_id="parts", password="pw")
    return c


def answer(c, p):
    r = smpplib.smpp.make_pdu(p.command + "_resp", client=c)
    r.sequence = p.sequence
    c.send_pdu(r)


def receipt(p):
    return {
        "receipted_message_id": text(getattr(p, "receipted_message_id", None)),
        "message_state": getattr(p, "message_state", None),
        "text": text(p.short_message),
    }


def response(c):
    """The next response; receipts and enquire_links meanwhile are answered (receipts kept)."""
    while True:
        p = c.read_pdu()
        if p.command == "deliver_sm":
            out["receipts"].append(receipt(p))
            answer(c, p)
            continue
        if p.command == "enquire_link":
            answer(c, p)
            continue
        return p


def submit(c, data, dc, esm=0, rd=0, **tlvs):
    p = smpplib.smpp.make_pdu(
        "submit_sm",
        client=c,
        source_addr_ton=smpplib.consts.SMPP_TON_ALNUM,
        source_addr="SMSGW",
        dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
        dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
        destination_addr=TO,
        short_message=data,
        data_coding=dc,
        esm_class=esm,
        registered_delivery=rd,
        **tlvs,
    )
    c.send_pdu(p)
    r = response(c)
    return {"status": int(r.status), "message_id": text(getattr(r, "message_id", None))}


def udh8(ref, total, seq):
    return bytes([0x05, 0x00, 0x03, ref, total, seq])


def udh16(ref, total, seq):
    return bytes([0x06, 0x08, 0x04, ref >> 8, ref & 0xFF, total, seq])


def sar(ref, total, seq):
    return {"sar_msg_ref_num": ref, "sar_total_segments": total, "sar_segment_seqnum": seq}


def chunks(data, n):
    size = -(-len(data) // n)
    return [data[i * size:(i + 1) * size] for i in range(n)]


if SCENARIO == "main":
    c = client()
    out["cyrillic_text"] = CYRILLIC
    out["gsm_text"] = GSM
    # UCS-2 in 3 UDH parts, cut so the emoji's surrogate pair spans parts 1 and 2.
    ucs2 = CYRILLIC.encode("utf-16-be")
    emoji = ucs2.index("😀".encode("utf-16-be"))
    rest = ucs2[emoji + 2:]
    half = len(rest) // 4 * 2
    cut = [ucs2[: emoji + 2], rest[:half], rest[half:]]
    assert all(len(p) <= 134 for p in cut), [len(p) for p in cut]
    out["ucs2"] = [submit(c, udh8(0x2A, 3, i + 1) + p, 8, esm=0x40, rd=1) for i, p in enumerate(cut)]
    # GSM-7 (ASCII-safe septets) in SAR parts, out of order, part 1 twice, part 2 again after the join.
    g = chunks(GSM.encode("ascii"), 3)
    out["sar"] = [submit(c, g[i - 1], 0, **sar(777, 3, i)) for i in (3, 1, 1, 2, 2)]
    # A 16-bit UDH set whose second part has another coding.
    out["mixed"] = [
        submit(c, udh16(0x1234, 2, 1) + "Привет".encode("utf-16-be"), 8, esm=0x40),
        submit(c, udh16(0x1234, 2, 2) + b"hello", 0, esm=0x40),
    ]
    # An incomplete set: parts 1 and 3 of 3 only.
    out["incomplete"] = [submit(c, udh8(0x33, 3, i) + b"piece %d " % i, 0, esm=0x40, rd=1) for i in (1, 3)]
    # registered_delivery=0: delivered, no receipt; then one with 1.
    out["rd0"] = submit(c, b"no receipt for me", 0, rd=0)
    state = None
    for _ in range(200):
        c.query_message(message_id=out["rd0"]["message_id"], source_addr="SMSGW")
        state = int(response(c).message_state)
        if state == 2:
            break
        time.sleep(0.1)
    out["rd0_state"] = state
    out["rd1"] = submit(c, b"a receipt for me", 0, rd=1)
    want = {out["rd1"]["message_id"], out["incomplete"][0]["message_id"], out["ucs2"][0]["message_id"]}
    deadline = time.time() + 30
    while not want <= {r["receipted_message_id"] for r in out["receipts"]} and time.time() < deadline:
        p = c.read_pdu()
        if p.command == "deliver_sm":
            out["receipts"].append(receipt(p))
        if p.command in ("deliver_sm", "enquire_link"):
            answer(c, p)
    c.unbind()
    c.disconnect()
elif SCENARIO in ("first", "second"):
    c = client()
    seq = 1 if SCENARIO == "first" else 2
    out["part"] = submit(c, RESTART[seq - 1].encode("ascii"), 0, **sar(4242, 2, seq))
    out["text"] = "".join(RESTART)
    c.unbind()
    c.disconnect()
print(json.dumps(out))
