// npm `smpp` (node-smpp) as an independent ESME against smsgw's SMPP server.
//
// usage: node smpp_server_client.js <port> <system_id> <password>
//
// Binds as transceiver, submits a GSM 7-bit text (data_coding 0) and a Cyrillic UCS-2 text (data_coding 8),
// answers enquire_link, prints one JSON object per line for each response, unbinds and exits 0. Exits 1 on an
// error or after 20 s.
'use strict';

const smpp = require('smpp');

const [port, systemId, password] = [Number(process.argv[2]), process.argv[3], process.argv[4]];

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

let done = 0;
function submit(kind, text, dataCoding) {
  session.submit_sm(
    { source_addr: 'NODE', destination_addr: '+79161234567', data_coding: dataCoding, short_message: text },
    (pdu) => {
      out({ event: 'submit_resp', kind: kind, status: pdu.command_status, message_id: pdu.message_id });
      done += 1;
      if (done === 2) {
        session.unbind((u) => {
          out({ event: 'unbind_resp', status: u.command_status });
          session.close();
          process.exit(0);
        });
      }
    },
  );
}

session.bind_transceiver({ system_id: systemId, password: password, interface_version: 0x34 }, (pdu) => {
  out({ event: 'bind_resp', status: pdu.command_status, system_id: pdu.system_id });
  if (pdu.command_status !== 0) {
    session.close();
    process.exit(0);
  }
  submit('gsm', 'Hello from node-smpp {ok}', 0x00);
  submit('ucs2', 'Привет от node-smpp', 0x08);
});
