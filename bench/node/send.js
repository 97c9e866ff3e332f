// nodemailer peer for bench/bench.py: N raw messages of SIZE bytes through one
// pooled transport (pool: true, maxConnections CONNS, one connection reused for
// every message), at most 4 * CONNS messages queued at a time.
//   node send.js HOST PORT N SIZE CONNS [tls CAFILE]
// Exit 1 unless all are sent (bench.py --tls counts the connections at stunnel).
'use strict';
const fs = require('fs');
const nodemailer = require('nodemailer');

const [host, port, n, size, conns, tls, ca] = process.argv.slice(2);
const N = Number(n), K = Number(conns);
const hdr = 'From: a@example.org\r\nTo: b@example.org\r\nSubject: bench\r\n\r\n';
const line = 'x'.repeat(76) + '\r\n';
const body = line.repeat(Math.floor(Number(size) / line.length) + 1).slice(0, Math.max(0, Number(size) - hdr.length));
const raw = Buffer.from(hdr + body);
const secure = tls === 'tls';
const opts = {
  host, port: Number(port), pool: true, maxConnections: K, maxMessages: Infinity,
  secure, ignoreTLS: !secure, name: 'bench.example.org',
};
if (secure) opts.tls = { ca: [fs.readFileSync(ca)], servername: 'localhost' };
const t = nodemailer.createTransport(opts);
let next = 0, done = 0, failed = 0;
function one() {
  if (next >= N) return;
  next++;
  t.sendMail({ envelope: { from: 'a@example.org', to: ['b@example.org'] }, raw }).then(
    () => { done++; finish(); one(); },
    (e) => { failed++; if (failed < 5) console.error('send failed:', e.message); done++; finish(); one(); });
}
function finish() {
  if (done === N) {
    t.close();
    process.exitCode = failed ? 1 : 0;
  }
}
for (let i = 0; i < 4 * K; i++) one();
