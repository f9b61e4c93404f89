// npm `smpp` (node-smpp) as an independent ESME replacing its messages on smsgw's SMPP server (replace_sm).
//
// usage: node smpp_server_replace.js <port> <system_id> <password> <foreign_message_id>
//
// Binds as transceiver; submits a GSM 7-bit text and a Cyrillic UCS-2 text, both scheduled an hour ahead, and a
// third to go at once; replaces the first's text (schedule kept), the second's text and schedule (one second
// ahead, an absolute time); then tries what must be refused: another sender, a validity that ends before the
// schedule, a text over the site's segments, an unknown id, another key's message, and (once query_sm says it
// was delivered) the third. Prints one JSON object per line (`event`, `status`, ...), unbinds and exits 0.
// Exits 1 on an error or after 30 s.
'use strict';

const smpp = require('smpp');

const [port, systemId, password, foreign] = [
  Number(process.argv[2]),
  process.argv[3],
  process.argv[4],
  process.argv[5],
];

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function fail(why) {
  out({ event: 'error', why: String(why) });
  process.exit(1);
}

setTimeout(() => fail('timeout'), 30000).unref();

const session = smpp.connect({ url: 'smpp://127.0.0.1:' + port });
session.on('error', fail);
session.on('enquire_link', (pdu) => session.send(pdu.response()));
session.on('deliver_sm', (pdu) => session.send(pdu.response()));

function call(command, params) {
  return new Promise((resolve) => session[command](params, resolve));
}

const TO = '+79161234567';
const HOUR = '000000010000000R';

async function submit(event, params) {
  const pdu = await call('submit_sm', Object.assign({ source_addr: 'NODE', destination_addr: TO }, params));
  out({ event: event, status: pdu.command_status, message_id: pdu.message_id });
  return pdu.message_id;
}

async function replace(event, params) {
  const pdu = await call('replace_sm', params);
  out({ event: event, status: pdu.command_status, command_id: pdu.command_id });
}

async function main() {
  const bound = await call('bind_transceiver', { system_id: systemId, password: password, interface_version: 0x34 });
  out({ event: 'bind_resp', status: bound.command_status });
  if (bound.command_status !== 0) fail('bind refused');

  const gsm = await submit('submit_gsm', {
    short_message: 'Hello, first draft',
    data_coding: 0x00,
    schedule_delivery_time: HOUR,
    registered_delivery: 1,
  });
  const ucs2 = await submit('submit_ucs2', {
    short_message: 'Привет, черновик',
    data_coding: 0x08,
    schedule_delivery_time: HOUR,
  });
  const now = await submit('submit_now', { short_message: 'sent at once', data_coding: 0x00 });

  // replace_sm has no data_coding: its text is in the alphabet of the message it replaces.
  await replace('replace_gsm', { message_id: gsm, source_addr: 'NODE', short_message: 'Hello, final text' });
  await replace('replace_ucs2', {
    message_id: ucs2,
    short_message: smpp.encodings.UCS2.encode('Привет, окончательно'),
    schedule_delivery_time: new Date(Date.now() + 1000),
  });

  await replace('other_sender', { message_id: gsm, source_addr: 'OTHER', short_message: 'not mine to send' });
  await replace('expires_first', { message_id: gsm, short_message: 'too short-lived', validity_period: '000000000001000R' });
  await replace('too_long', { message_id: gsm, short_message: 'x'.repeat(200) });
  await replace('unknown', { message_id: '7fffffff', short_message: 'nobody' });
  await replace('foreign', { message_id: foreign, short_message: 'another key' });

  let state = null;
  for (let i = 0; i < 200 && state !== 2; i++) {
    const q = await call('query_sm', { message_id: now, source_addr: 'NODE' });
    state = q.message_state;
    if (state !== 2) await new Promise((r) => setTimeout(r, 100));
  }
  out({ event: 'query_now', state: state });
  await replace('after_delivery', { message_id: now, short_message: 'too late' });

  const u = await call('unbind', {});
  out({ event: 'unbind_resp', status: u.command_status });
  session.close();
  process.exit(0);
}

main().catch(fail);
