// npm `smpp` (node-smpp) submitting a long message in UDH parts to smsgw's SMPP server.
//
// usage: node smpp_server_parts.js <port> <system_id> <password>
//
// Binds as transceiver and submits a Cyrillic UCS-2 text as two parts, each with a concatenation header
// (IEI 0x00, reference 0x51) that node-smpp puts in front of the text and flags with esm_class UDHI. Prints one
// JSON object per line (the text, each submit_resp), unbinds and exits 0; exits 1 on an error or after 20 s.
'use strict';

const smpp = require('smpp');

const [port, systemId, password] = [Number(process.argv[2]), process.argv[3], process.argv[4]];
const PARTS = ['Длинное сообщение из node-smpp, часть первая; ', 'а это вторая и последняя часть.'];

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function fail(why) {
  out({ event: 'error', why: String(why) });
  process.exit(1);
}

setTimeout(() => fail('timeout'), 20000).unref();

const session = smpp.connect({ url: 'smpp://127.0.0.1:' + port });
session.on('error', fail);
session.on('enquire_link', (pdu) => session.send(pdu.response()));
session.on('deliver_sm', (pdu) => session.send(pdu.response()));

session.bind_transceiver({ system_id: systemId, password: password, interface_version: 0x34 }, (pdu) => {
  if (pdu.command_status !== 0) fail('bind refused: ' + pdu.command_status);
  out({ event: 'text', text: PARTS.join('') });
  let done = 0;
  PARTS.forEach((message, i) => {
    const udh = Buffer.from([0x05, 0x00, 0x03, 0x51, PARTS.length, i + 1]);
    session.submit_sm(
      { source_addr: 'NODE', destination_addr: '+79161234567', data_coding: 0x08, short_message: { udh, message } },
      (resp) => {
        out({ event: 'submit_resp', part: i + 1, status: resp.command_status, message_id: resp.message_id });
        done += 1;
        if (done === PARTS.length) {
          session.unbind(() => {
            session.close();
            process.exit(0);
          });
        }
      },
    );
  });
});
