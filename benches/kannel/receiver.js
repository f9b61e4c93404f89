// The side-by-side's receipt receiver: Kannel's DLR callbacks
// (GET /dlr?i=<index>&t=<type>, type 1 = delivered) and smsgw's
// message.delivered webhooks (POST /hook, the message id in data.id).
// Counts each message's deliveries; GET /stats answers
// {"distinct", "total", "first_ms", "last_ms"}. Prints its port first.
'use strict';
const http = require('http');

const seen = new Map();
let total = 0;
let first = null;
let last = null;

function delivered(key) {
  const now = Date.now();
  total++;
  seen.set(key, (seen.get(key) || 0) + 1);
  if (first === null) first = now;
  last = now;
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/stats') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ distinct: seen.size, total, first_ms: first, last_ms: last }));
    return;
  }
  if (url.pathname === '/dlr') {
    if (url.searchParams.get('t') === '1') delivered('k' + url.searchParams.get('i'));
    res.end('ok');
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    try {
      const e = JSON.parse(Buffer.concat(chunks).toString());
      if (e.type === 'message.delivered') delivered('s' + e.data.id);
    } catch (_) { /* not an event */ }
    res.statusCode = 204;
    res.end();
  });
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n'));
