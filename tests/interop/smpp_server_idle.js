// npm `smpp` (node-smpp) holding an idle bind to smsgw's SMPP server, to see what the server sends on its own.
//
// usage: node smpp_server_idle.js <port> <system_id> <password> answer|silent
//
// Binds as transceiver and submits nothing. `answer` answers the server's enquire_link and unbind like a well-kept
// ESME; `silent` answers nothing. Prints one JSON object per line for the bind_resp and for each PDU the server sends
// (enquire_link, unbind), and `close` when the connection ends, then exits 0. Exits 1 on an error or after 60 s.
'use strict';

const smpp = require('smpp');

const [port, systemId, password, mode] = [Number(process.argv[2]), process.argv[3], process.argv[4], process.argv[5]];
const answer = mode === 'answer';

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

setTimeout(() => {
  out({ event: 'error', why: 'timeout' });
  process.exit(1);
}, 60000).unref();

const session = smpp.connect({ url: 'smpp://127.0.0.1:' + port });
// A dropped connection may surface as an error (ECONNRESET) before `close`.
session.on('error', (e) => out({ event: 'socket_error', why: String(e.code || e) }));
session.on('close', () => {
  out({ event: 'close' });
  process.exit(0);
});
session.on('enquire_link', (pdu) => {
  out({ event: 'enquire_link' });
  if (answer) {
    session.send(pdu.response());
  }
});
session.on('unbind', (pdu) => {
  out({ event: 'unbind' });
  if (answer) {
    session.send(pdu.response());
  }
});

session.bind_transceiver({ system_id: systemId, password: password, interface_version: 0x34 }, (pdu) => {
  out({ event: 'bind_resp', status: pdu.command_status });
});
