// A carrier SMSC built on the independent node `smpp` package, for smsgw's
// interop tests. Options come as JSON in argv[2]; every event is printed as
// a JSON line on stdout; commands (inbound messages) arrive as JSON lines
// on stdin.
'use strict';
const smpp = require('smpp');
const readline = require('readline');

const opts = Object.assign(
  { password: null, idFormat: 'dec', receiptDelayMs: 20, receiptFirst: false, tlvs: false,
    undeliveredEvery: 0, throttlePerSec: 0, dropEvery: 0 },
  JSON.parse(process.argv[2] || '{}'));

const log = (o) => process.stdout.write(JSON.stringify(o) + '\n');
let counter = 100000;
let submits = 0;
let windowStart = Date.now();
let inWindow = 0;
const sessions = new Set();

const stamp = (d) => {
  const p = (n) => String(n).padStart(2, '0');
  return p(d.getUTCFullYear() % 100) + p(d.getUTCMonth() + 1) + p(d.getUTCDate()) + p(d.getUTCHours()) + p(d.getUTCMinutes());
};

function sendReceipt(session, pdu, id, undelivered) {
  const stat = undelivered ? 'UNDELIV' : 'DELIVRD';
  const now = stamp(new Date());
  const fields = {
    source_addr: pdu.destination_addr,
    source_addr_ton: pdu.dest_addr_ton,
    destination_addr: pdu.source_addr || 'smsgw',
    esm_class: 0x04,
    short_message: `id:${id} sub:001 dlvrd:${undelivered ? '000' : '001'} submit date:${now} done date:${now} stat:${stat} err:${undelivered ? '001' : '000'} text:receipt`,
  };
  if (opts.tlvs) {
    fields.receipted_message_id = id;
    fields.message_state = undelivered ? 5 : 2;
  }
  session.deliver_sm(fields, (resp) => log({ event: 'receipt_acked', id, status: resp.command_status }));
}

const server = smpp.createServer((session) => {
  const bind = (pdu) => {
    if (opts.password && pdu.password !== opts.password) {
      log({ event: 'bind_refused', system_id: pdu.system_id });
      session.send(pdu.response({ command_status: smpp.ESME_RINVPASWD }));
      return;
    }
    sessions.add(session);
    log({ event: 'bind', command: pdu.command, system_id: pdu.system_id, interface_version: pdu.interface_version });
    session.send(pdu.response({ system_id: 'node-smsc' }));
  };
  session.on('bind_transceiver', bind);
  session.on('bind_transmitter', bind);
  session.on('bind_receiver', bind);
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => {
    log({ event: 'unbind' });
    session.send(pdu.response());
    session.close();
  });
  session.on('submit_sm', (pdu) => {
    const now = Date.now();
    if (now - windowStart >= 1000) { windowStart = now; inWindow = 0; }
    if (opts.throttlePerSec && ++inWindow > opts.throttlePerSec) {
      log({ event: 'throttled' });
      session.send(pdu.response({ command_status: smpp.ESME_RTHROTTLED }));
      return;
    }
    submits += 1;
    const n = counter++;
    const id = opts.idFormat === 'hex' ? n.toString(16).toUpperCase() : String(n);
    const sm = pdu.short_message || {};
    const udh = (sm.udh || []).map((b) => b.toString('hex'));
    const payload = pdu.message_payload;
    log({
      event: 'submit', id, dest: pdu.destination_addr, dest_ton: pdu.dest_addr_ton, dest_npi: pdu.dest_addr_npi,
      src: pdu.source_addr, src_ton: pdu.source_addr_ton, src_npi: pdu.source_addr_npi,
      data_coding: pdu.data_coding, esm_class: pdu.esm_class, registered_delivery: pdu.registered_delivery,
      udh, text: typeof sm.message === 'string' ? sm.message : (sm.message ? sm.message.toString('hex') : null),
      payload: payload ? (payload.message !== undefined ? payload.message : String(payload)) : null,
      sar: pdu.sar_msg_ref_num !== undefined ? [pdu.sar_msg_ref_num, pdu.sar_total_segments, pdu.sar_segment_seqnum] : null,
    });
    const undelivered = opts.undeliveredEvery > 0 && submits % opts.undeliveredEvery === 0;
    const respond = () => session.send(pdu.response({ message_id: id }));
    const receipt = () => { if (pdu.registered_delivery & 1) sendReceipt(session, pdu, id, undelivered); };
    if (opts.receiptFirst) {
      receipt();
      setTimeout(respond, 30);
    } else {
      respond();
      setTimeout(receipt, opts.receiptDelayMs);
    }
    if (opts.dropEvery && submits % opts.dropEvery === 0) {
      log({ event: 'drop', after: submits });
      setTimeout(() => session.destroy(), 5);
    }
  });
  session.on('close', () => sessions.delete(session));
  session.on('error', (e) => log({ event: 'session_error', error: String(e) }));
});

server.listen(0, '127.0.0.1', () => log({ event: 'listening', port: server.address().port }));

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const cmd = JSON.parse(line);
  const session = [...sessions][0];
  if (!session) { log({ event: 'no_session' }); return; }
  if (cmd.inbound) {
    const { from, to, text } = cmd.inbound;
    session.deliver_sm({ source_addr: from, source_addr_ton: 1, source_addr_npi: 1, destination_addr: to, short_message: text },
      (resp) => log({ event: 'inbound_acked', status: resp.command_status }));
  }
  if (cmd.inbound_parts) {
    const { from, to, ref, parts } = cmd.inbound_parts;
    parts.forEach((text, i) => {
      session.deliver_sm({
        source_addr: from, source_addr_ton: 1, source_addr_npi: 1, destination_addr: to, esm_class: 0x40,
        short_message: { udh: Buffer.from([0x05, 0x00, 0x03, ref, parts.length, i + 1]), message: text },
      }, (resp) => log({ event: 'inbound_acked', part: i + 1, status: resp.command_status }));
    });
  }
});
process.stdin.on('end', () => process.exit(0));
