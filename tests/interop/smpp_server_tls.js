// npm `smpp` (node-smpp) binding to smsgw's SMPP server over TLS (ssmpp://), trusting only the given certificate.
//
// usage: node smpp_server_tls.js <port> <ca.pem> <system_id> <password>
//
// Binds as transceiver, submits one GSM 7-bit text asking for a receipt, answers the receipt's deliver_sm, prints
// one JSON object per line (bind_resp, submit_resp, deliver_sm, unbind_resp), unbinds and exits 0. Exits 1 on an
// error or after 30 s.
'use strict';

const fs = require('fs');
const smpp = require('smpp');

const [port, caFile, systemId, password] = [Number(process.argv[2]), process.argv[3], process.argv[4], process.argv[5]];

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function fail(why) {
  out({ event: 'error', why: String(why) });
  process.exit(1);
}

setTimeout(() => fail('timeout'), 30000).unref();

const session = smpp.connect({
  url: 'ssmpp://127.0.0.1:' + port,
  ca: fs.readFileSync(caFile),
  servername: 'localhost',
});
session.on('error', fail);
session.on('enquire_link', (pdu) => session.send(pdu.response()));

let messageId = null;
const receipted = new Set();
function finishOnce() {
  if (messageId === null || !receipted.has(messageId)) {
    return;
  }
  messageId = undefined;
  session.unbind((u) => {
    out({ event: 'unbind_resp', status: u.command_status });
    session.close();
    process.exit(0);
  });
}

session.on('deliver_sm', (pdu) => {
  session.send(pdu.response());
  const text = Buffer.isBuffer(pdu.short_message) ? pdu.short_message.toString() : pdu.short_message.message;
  out({
    event: 'deliver_sm',
    esm_class: pdu.esm_class,
    receipted_message_id: pdu.receipted_message_id,
    message_state: pdu.message_state,
    text: text,
    tls: session.socket.encrypted === true,
  });
  receipted.add(pdu.receipted_message_id);
  finishOnce();
});

session.on('secureConnect', () => {
  session.bind_transceiver({ system_id: systemId, password: password, interface_version: 0x34 }, (pdu) => {
    out({ event: 'bind_resp', status: pdu.command_status, system_id: pdu.system_id });
    if (pdu.command_status !== 0) {
      session.close();
      process.exit(0);
    }
    session.submit_sm(
      { source_addr: 'TLS', destination_addr: '+79161234567', short_message: 'Hello over TLS', registered_delivery: 1 },
      (r) => {
        messageId = r.message_id;
        out({ event: 'submit_resp', status: r.command_status, message_id: r.message_id });
        if (r.command_status !== 0) {
          process.exit(0);
        }
        finishOnce();
      },
    );
  });
});
