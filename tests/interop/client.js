// Interop client on npm `smpp` (node-smpp 0.5.1), an SMPP implementation independent of rusmpp.
//
// usage: node client.js <port> [inbound_pdus]
//
// Binds as transceiver (system_id "interop", password "pw"), submits a GSM 7-bit text (data_coding 0) and a UCS-2
// text (data_coding 8) with registered_delivery 1, waits for both delivery receipts and `inbound_pdus` other
// deliver_sm (default 0), acknowledges every deliver_sm, prints one JSON object per line for each thing it saw,
// unbinds and exits 0. Exits 1 on an error or after 20 s.
'use strict';

const smpp = require('smpp');

const port = Number(process.argv[2]);
const wantInbound = Number(process.argv[3] || 0);
if (!port) {
  console.error('usage: node client.js <port> [inbound_pdus]');
  process.exit(2);
}

const GSM_TEXT = 'Hello from node-smpp @ £5 {ok}';
const UCS2_TEXT = 'Привет, мир! 你好';

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function fail(why) {
  out({ event: 'error', why: String(why) });
  process.exit(1);
}

setTimeout(() => fail('timeout'), 20000).unref();

function parseReceipt(text) {
  const fields = {};
  const re = /(id|sub|dlvrd|submit date|done date|stat|err):(\S*)/g;
  let m;
  while ((m = re.exec(text)) !== null) {
    fields[m[1]] = m[2];
  }
  const t = text.indexOf('text:');
  fields.text = t >= 0 ? text.slice(t + 5) : null;
  return fields;
}

const session = smpp.connect({ url: 'smpp://127.0.0.1:' + port });
session.on('error', fail);

let receipts = 0;
let inbound = 0;
let submitsDone = 0;
let finished = false;

function maybeFinish() {
  if (finished || submitsDone < 2 || receipts < 2 || inbound < wantInbound) {
    return;
  }
  finished = true;
  session.unbind((pdu) => {
    out({ event: 'unbind_resp', status: pdu.command_status });
    session.close();
    process.exit(0);
  });
}

session.on('deliver_sm', (pdu) => {
  const sm = pdu.short_message || {};
  const text = typeof sm === 'string' ? sm : sm.message;
  if (pdu.esm_class & 0x04) {
    receipts += 1;
    out({
      event: 'receipt',
      seq: pdu.sequence_number,
      esm_class: pdu.esm_class,
      source_addr: pdu.source_addr,
      destination_addr: pdu.destination_addr,
      text: text,
      fields: parseReceipt(String(text)),
      receipted_message_id: pdu.receipted_message_id === undefined ? null : pdu.receipted_message_id,
      message_state: pdu.message_state === undefined ? null : pdu.message_state,
    });
  } else {
    inbound += 1;
    out({
      event: 'inbound',
      seq: pdu.sequence_number,
      esm_class: pdu.esm_class,
      data_coding: pdu.data_coding,
      source_addr: pdu.source_addr,
      destination_addr: pdu.destination_addr,
      udh: (sm.udh || []).map((b) => Array.from(b)),
      text: text,
    });
  }
  session.send(pdu.response());
  maybeFinish();
});

function submit(kind, text, dataCoding) {
  session.submit_sm(
    {
      source_addr: 'INTEROP',
      destination_addr: '447700900123',
      registered_delivery: 1,
      data_coding: dataCoding,
      short_message: text,
    },
    (pdu) => {
      out({ event: 'submit_resp', kind: kind, status: pdu.command_status, message_id: pdu.message_id });
      submitsDone += 1;
      maybeFinish();
    },
  );
}

session.bind_transceiver({ system_id: 'interop', password: 'pw', interface_version: 0x34 }, (pdu) => {
  out({ event: 'bind_resp', status: pdu.command_status, system_id: pdu.system_id });
  if (pdu.command_status !== 0) {
    fail('bind failed with ' + pdu.command_status);
  }
  submit('gsm', GSM_TEXT, 0x00);
  submit('ucs2', UCS2_TEXT, 0x08);
});
