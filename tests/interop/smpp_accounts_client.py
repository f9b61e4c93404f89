"""smpplib (PyPI) as an independent ESME for the SMPP server's accounts.

usage:
  python smpp_accounts_client.py listen <port> <system_id> <password>
      Bind as a receiver, print {"event": "bind", "status": N}, then one JSON
      line per deliver_sm (addresses, esm_class, data_coding, the decoded
      text, receipted_message_id), each acknowledged; until killed.
  python smpp_accounts_client.py submit <port> <system_id> <password> <to> <text> <priority_flag>
      Bind as a transmitter (printing the bind's status), submit one
      message when bound, print {"event": "submit", "status", "message_id"}.
"""
import json
import sys

import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.gsm
import smpplib.smpp


def say(**kw):
    print(json.dumps(kw, ensure_ascii=False), flush=True)


def text(b, coding):
    if isinstance(b, str):
        b = b.encode("latin-1")
    if coding == 8:
        return b.decode("utf-16-be")
    return b.decode("latin-1")


def bind(kind, port, system_id, password):
    c = smpplib.client.Client("127.0.0.1", port, timeout=30, allow_unknown_opt_params=True)
    c.connect()
    try:
        getattr(c, "bind_" + kind)(system_id=system_id, password=password)
    except smpplib.exceptions.PDUError as e:
        say(event="bind", status=int(e.args[1]))
        c.disconnect()
        return None
    say(event="bind", status=0)
    return c


def listen(port, system_id, password):
    c = bind("receiver", port, system_id, password)
    if c is None:
        return
    while True:
        try:
            p = c.read_pdu()
        except smpplib.exceptions.ConnectionError:
            return
        except Exception:  # a read timeout: the bind is idle
            continue
        if p.command in ("deliver_sm", "enquire_link"):
            r = smpplib.smpp.make_pdu(p.command + "_resp", client=c)
            r.sequence = p.sequence
            c.send_pdu(r)
        if p.command != "deliver_sm":
            continue
        body = p.short_message or getattr(p, "message_payload", None) or b""
        addr = lambda a: a.decode() if isinstance(a, bytes) else a
        rid = getattr(p, "receipted_message_id", None)
        say(
            event="deliver_sm",
            source_addr=addr(p.source_addr),
            destination_addr=addr(p.destination_addr),
            esm_class=int(p.esm_class),
            data_coding=int(p.data_coding),
            text=text(body, int(p.data_coding)),
            receipted_message_id=addr(rid) if rid else None,
        )


def submit(port, system_id, password, to, message, priority_flag):
    c = bind("transmitter", port, system_id, password)
    if c is None:
        return
    parts, coding, esm = smpplib.gsm.make_parts(message)
    c.send_message(
        source_addr_ton=smpplib.consts.SMPP_TON_ALNUM,
        source_addr="SHOP",
        dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
        dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
        destination_addr=to.lstrip("+"),
        short_message=parts[0],
        data_coding=coding,
        esm_class=esm,
        priority_flag=int(priority_flag),
        registered_delivery=1,  # receipts asked for (0, the default, asks for none)
    )
    while True:
        r = c.read_pdu()
        if r.command == "submit_sm_resp":
            break
    mid = r.message_id.decode() if isinstance(r.message_id, bytes) else r.message_id
    say(event="submit", status=int(r.status), message_id=mid)
    c.unbind()
    c.disconnect()


if __name__ == "__main__":
    cmd, port, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    if cmd == "listen":
        listen(port, *args)
    else:
        submit(port, *args)
