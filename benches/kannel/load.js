// The side-by-side's HTTP load: `count` single-message requests over
// `connections` keep-alive connections, to Kannel's sendsms (GET, with a
// dlr-url per message when `dlr` is given) or to smsgw's POST /v1/messages. Each message has a
// number of its own (+7916 and the index), so the SMSC's log shows any
// message sent twice. Node's http only, no dependencies. Options come as
// JSON in argv[2]; the result is one JSON line on stdout.
'use strict';
const http = require('http');

const o = JSON.parse(process.argv[2]);
const agent = new http.Agent({ keepAlive: true, maxSockets: o.connections });
const number = (i) => '7916' + String(i).padStart(7, '0');
const text = 'Your code is 123456';

function request(i) {
  return new Promise((resolve) => {
    let opts;
    let body = null;
    if (o.gateway === 'kannel') {
      const q = new URLSearchParams({ username: 'bench', password: 'bench', from: 'BENCH', to: number(i), text });
      if (o.dlr) {
        q.set('dlr-mask', '1');
        q.set('dlr-url', `${o.dlr}?i=${i}&t=%d`);
      }
      opts = { method: 'GET', path: `/cgi-bin/sendsms?${q}` };
    } else {
      body = JSON.stringify({ to: '+' + number(i), text });
      opts = {
        method: 'POST', path: '/v1/messages',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body),
                   authorization: `Bearer ${o.key}` },
      };
    }
    const req = http.request({ host: '127.0.0.1', port: o.port, agent, ...opts }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode >= 200 && res.statusCode < 300));
    });
    req.on('error', () => resolve(false));
    if (body) req.write(body);
    req.end();
  });
}

(async () => {
  let next = 0;
  let ok = 0;
  let failed = 0;
  const t0 = process.hrtime.bigint();
  const worker = async () => {
    while (next < o.count) {
      const i = next++;
      if (await request(i)) ok++; else failed++;
    }
  };
  await Promise.all(Array.from({ length: o.connections }, worker));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  process.stdout.write(JSON.stringify({ ok, failed, seconds }) + '\n');
  agent.destroy();
})();
