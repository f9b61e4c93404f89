#!/usr/bin/env python3
"""Interop peer: python-gsmmodem-new (import name `gsmmodem`) drives smsgw's virtual modem.

Usage:
    gsmmodem_peer.py PORT CONTROL_URL [--send TO TEXT]... [--deliver FROM TEXT]...
                     [--deliver-stored FROM TEXT]... [--verbose]

PORT is the modem's serial device (the link `smsgw simulate modem` made), CONTROL_URL the
simulator's control API (http://127.0.0.1:PORT). The script

1. connects with GsmModem.connect() (the library's full init sequence) and reads the modem's
   identity: manufacturer, model, revision, IMEI, IMSI, signal strength, network name;
2. sends each --send text with GsmModem.sendSms(), asking for status reports, and waits until the
   reports came back (one per part: +CDSI, then AT+CMGR/AT+CMGD by the library);
3. for each --deliver, asks the simulator's network to deliver the text (POST /modems/0) and waits
   for the library's SMS-received callback (+CMTI, then AT+CMGR/AT+CMGD by the library);
4. for each --deliver-stored, does the same but reads the stored messages with
   GsmModem.listStoredSms() instead, and joins the parts of a concatenated message itself by the
   concatenation headers the library decoded: the library hands over each part on its own and
   never reassembles, and its notification handler acts on the first +CMTI line of a burst only;
5. lists what is left in storage (should be nothing: every message read was deleted).

It prints one JSON object per line on stdout (ASCII only) for the Rust test to check; the
library's log goes to stderr (DEBUG with --verbose). Exit 0 when every step ran, 1 with a
message on stderr when the library failed or a step timed out. It does not judge the texts:
the caller compares them.
"""

import argparse
import json
import logging
import queue
import sys
import threading
import time
import urllib.request

from gsmmodem.exceptions import TimeoutException
from gsmmodem.modem import GsmModem, ReceivedSms, SentSms, Sms
from gsmmodem.pdu import Concatenation, encodeSmsSubmitPdu

# How long to wait for a message or a report to come back.
WAIT_SECONDS = 20


class Failure(Exception):
    """A step did not complete; the message says which and why."""


def emit(event, **fields):
    print(json.dumps(dict(event=event, **fields)))


def concat_of(sms):
    """The concatenation header of a received part as (reference, total, number), or None."""
    for ie in getattr(sms, "udh", None) or []:
        if isinstance(ie, Concatenation):
            return (ie.reference, ie.parts, ie.number)
    return None


def report_view(report):
    return dict(reference=report.reference, number=report.number, delivery_status=report.deliveryStatus)


class Peer:
    def __init__(self, port, control_url):
        self.control_url = control_url.rstrip("/")
        self.received = queue.Queue()
        self.reports = queue.Queue()
        self.baseline_threads = set()
        self.modem = GsmModem(
            port,
            115200,
            smsReceivedCallbackFunc=self.received.put,
            smsStatusReportCallback=self.reports.put,
            requestDelivery=True,
        )

    def connect(self):
        self.modem.connect()
        signal = self.modem.waitForNetworkCoverage(timeout=WAIT_SECONDS)
        # The library leaves the timer behind its timeout running (and the process alive) for the
        # whole timeout: stop it.
        for thread in threading.enumerate():
            if isinstance(thread, threading.Timer):
                thread.cancel()
        # Threads started from now on are the library's notification handlers (see settle()).
        self.baseline_threads = set(threading.enumerate())
        m = self.modem
        emit(
            "identity",
            manufacturer=m.manufacturer,
            model=m.model,
            revision=m.revision,
            imei=m.imei,
            imsi=m.imsi,
            signal=m.signalStrength,
            coverage_signal=signal,
            network=m.networkName,
            smsc=m.smsc,
        )

    def send(self, to, text):
        self.settle()
        parts = len(encodeSmsSubmitPdu(to, text))
        if parts == 1:
            # The library's own wait: it returns once the report for this reference is in.
            try:
                sms = self.modem.sendSms(to, text, waitForDeliveryReport=True, deliveryTimeout=WAIT_SECONDS)
            except TimeoutException:
                raise Failure("sendSms to {}: no +CMGS answer or no status report in {} s".format(to, WAIT_SECONDS))
            if sms.report is None:
                raise Failure("sendSms to {}: a status report came but did not match reference {}".format(
                    to, sms.reference))
            reports = [sms.report]
        else:
            # One report per part; the library reports them through the status report callback.
            sms = self.modem.sendSms(to, text)
            reports = []
            deadline = time.monotonic() + WAIT_SECONDS
            while len(reports) < parts:
                left = deadline - time.monotonic()
                try:
                    reports.append(self.reports.get(timeout=max(left, 0.01)))
                except queue.Empty:
                    raise Failure("sendSms to {}: {} of {} status reports in {} s".format(
                        to, len(reports), parts, WAIT_SECONDS))
        status = {SentSms.ENROUTE: "enroute", SentSms.DELIVERED: "delivered", SentSms.FAILED: "failed"}
        emit(
            "sent",
            to=to,
            text=text,
            parts=parts,
            reference=sms.reference,
            status=status.get(sms.status, sms.status),
            reports=[report_view(r) for r in reports],
        )

    def settle(self):
        """Wait for the library's notification threads (they read and delete what +CMTI and +CDSI
        announced) to finish. The library takes a URC that comes while one of its commands waits
        for an answer as part of that answer and loses it, so the network must not deliver the
        next message while such a thread is still at work: that would test a race, not the modem.
        """
        for thread in threading.enumerate():
            if thread is not threading.current_thread() and thread not in self.baseline_threads:
                thread.join(WAIT_SECONDS)

    def network_delivers(self, sender, text):
        self.settle()
        body = json.dumps({"do": "deliver", "from": sender, "text": text}).encode()
        request = urllib.request.Request(
            self.control_url + "/modems/0",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=WAIT_SECONDS) as response:
            if response.status // 100 != 2:
                raise Failure("control API: deliver answered {}".format(response.status))

    def deliver(self, sender, text):
        self.network_delivers(sender, text)
        try:
            sms = self.received.get(timeout=WAIT_SECONDS)
        except queue.Empty:
            raise Failure("no SMS-received callback within {} s of a message from {}".format(WAIT_SECONDS, sender))
        emit("received", via="callback", sender=sms.number, text=sms.text, parts=[part_view(sms)])

    def deliver_stored(self, sender, text):
        # Read storage instead of being called back: with no callback the library leaves the
        # message where +CMTI said it is.
        callback, self.modem.smsReceivedCallback = self.modem.smsReceivedCallback, None
        try:
            self.network_delivers(sender, text)
            parts = self.wait_stored(sender)
            for sms in parts:
                self.modem.deleteStoredSms(sms.index)
        finally:
            self.modem.smsReceivedCallback = callback
        emit(
            "received",
            via="stored",
            sender=sender,
            text="".join(sms.text for sms in parts),
            parts=[part_view(sms) for sms in parts],
        )

    def wait_stored(self, sender):
        """The stored parts of one message from `sender`, in order, once all are there."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            stored = [
                sms
                for sms in self.modem.listStoredSms(status=Sms.STATUS_ALL)
                if isinstance(sms, ReceivedSms) and sms.number == sender
            ]
            concat = [c for c in map(concat_of, stored) if c is not None]
            if stored and not concat:
                return stored[:1]
            if concat and len(concat) == len(stored) and len({c[2] for c in concat}) == concat[0][1]:
                return sorted(stored, key=lambda sms: concat_of(sms)[2])
            if time.monotonic() > deadline:
                raise Failure("stored messages from {} never made a whole message: {}".format(
                    sender, [(concat_of(s), s.text) for s in stored]))
            time.sleep(0.2)

    def leftovers(self):
        self.settle()
        emit("stored_after", count=len(self.modem.listStoredSms(status=Sms.STATUS_ALL)))

    def close(self):
        self.modem.close()


def part_view(sms):
    concat = concat_of(sms)
    return dict(
        text=sms.text,
        concat=None if concat is None else dict(reference=concat[0], total=concat[1], number=concat[2]),
    )


def main():
    parser = argparse.ArgumentParser(description="python-gsmmodem-new against smsgw's virtual modem")
    parser.add_argument("port", help="serial device of the modem")
    parser.add_argument("control_url", help="the simulator's control API, http://HOST:PORT")
    parser.add_argument("--send", nargs=2, action="append", default=[], metavar=("TO", "TEXT"))
    parser.add_argument("--deliver", nargs=2, action="append", default=[], metavar=("FROM", "TEXT"))
    parser.add_argument("--deliver-stored", nargs=2, action="append", default=[], metavar=("FROM", "TEXT"))
    parser.add_argument("--verbose", action="store_true", help="the library's debug log on stderr")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(relativeCreated)7.0f ms %(threadName)s %(levelname)s %(message)s",
    )

    peer = Peer(args.port, args.control_url)
    step = "connect"
    try:
        peer.connect()
        for to, text in args.send:
            step = "send to " + to
            peer.send(to, text)
        for sender, text in args.deliver:
            step = "receive from " + sender
            peer.deliver(sender, text)
        for sender, text in args.deliver_stored:
            step = "read stored from " + sender
            peer.deliver_stored(sender, text)
        step = "list storage"
        peer.leftovers()
    except Exception as e:  # the library raises many kinds; all of them fail the step
        print("gsmmodem_peer: {} failed: {}: {}".format(step, type(e).__name__, e), file=sys.stderr)
        return 1
    finally:
        if peer.modem.alive:
            peer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
