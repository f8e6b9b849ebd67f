// End-to-end smoke test (and a short, rough sequential rate measurement) for
// the oidc-provider benchmark peer in server.mjs.
//
// Usage: node smoke.mjs [--requests N] [--port PORT] [--no-pin]
//   --requests N  sequential timed requests after the functional checks
//                 (default 2000; 0 skips the measurement)
//   --port PORT   port for the peer (default: a free ephemeral port)
//   --no-pin      do not start the peer under `taskset -c 0`
//
// Exits 0 and prints "N passed, 0 failed" when every check passes.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

const opts = { requests: 2000, port: 0, pin: true };
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    if (a === '--requests') { opts.requests = Number(argv[i += 1]); }
    else if (a === '--port') { opts.port = Number(argv[i += 1]); }
    else if (a === '--no-pin') { opts.pin = false; }
    else { console.error(`smoke.mjs: unknown argument ${a}`); process.exit(2); }
  }
  if (!Number.isInteger(opts.requests) || opts.requests < 0) { console.error('bad --requests'); process.exit(2); }
}

const RESOURCE = 'https://ledger.example.org';
const SCOPE = 'ledger:write';
const CLIENT_ID = 'bench-client';

const b64u = (buf) => Buffer.from(buf).toString('base64url');
const b64uJson = (obj) => b64u(JSON.stringify(obj));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// --- client key + JWKS file (what the Rust generator will write) ---------
const { privateKey: clientKey, publicKey: clientPub } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const kid = `bench-${crypto.randomBytes(4).toString('hex')}`;
const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-peer-'));
const jwksPath = path.join(tmpDir, 'client-jwks.json');
fs.writeFileSync(jwksPath, JSON.stringify({ keys: [{ ...clientPub.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' }] }));

function signAssertion(aud, overrides = {}) {
  const now = Math.floor(Date.now() / 1000);
  const header = { alg: 'ES256', kid, typ: 'JWT' };
  const claims = {
    iss: CLIENT_ID,
    sub: CLIENT_ID,
    aud,
    jti: crypto.randomUUID(),
    iat: now,
    exp: now + 60,
    ...overrides,
  };
  const input = `${b64uJson(header)}.${b64uJson(claims)}`;
  // JOSE ES256 = raw r||s (64 bytes), not DER.
  const sig = crypto.sign('sha256', Buffer.from(input), { key: clientKey, dsaEncoding: 'ieee-p1363' });
  return `${input}.${b64u(sig)}`;
}

function tokenBody(assertion, { resource = RESOURCE, scope = SCOPE } = {}) {
  return 'grant_type=client_credentials'
    + `&scope=${scope}`
    + `&resource=${encodeURIComponent(resource)}`
    + `&client_assertion_type=${encodeURIComponent('urn:ietf:params:oauth:client-assertion-type:jwt-bearer')}`
    + `&client_assertion=${assertion}`;
}

// --- start the peer ------------------------------------------------------
const port = opts.port || await freePort();
const issuer = `http://127.0.0.1:${port}`;
const tokenUrl = `${issuer}/token`;

const haveTaskset = spawnSync('taskset', ['--version'], { stdio: 'ignore' }).status === 0;
const pinned = opts.pin && haveTaskset;
const serverArgs = [path.join(here, 'server.mjs'), '--port', String(port), '--client-jwks', jwksPath];
const child = pinned
  ? spawn('taskset', ['-c', '0', process.execPath, ...serverArgs], { stdio: ['ignore', 'pipe', 'pipe'] })
  : spawn(process.execPath, serverArgs, { stdio: ['ignore', 'pipe', 'pipe'] });

let stderrBuf = '';
child.stderr.on('data', (d) => { stderrBuf += d; });

function killServer() {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
}
process.on('exit', () => {
  killServer();
  fs.rmSync(tmpDir, { recursive: true, force: true });
});

await new Promise((resolve, reject) => {
  let out = '';
  const timer = setTimeout(() => reject(new Error(`peer not READY within 15s; stderr:\n${stderrBuf}`)), 15_000);
  child.stdout.on('data', (d) => {
    out += d;
    if (out.includes(`READY ${tokenUrl}\n`)) { clearTimeout(timer); resolve(); }
  });
  child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`peer exited (${code}) before READY; stderr:\n${stderrBuf}`)); });
}).catch((err) => { console.error(err.message); process.exit(1); });

console.log(`peer READY at ${tokenUrl}${pinned ? ' (taskset -c 0)' : ''}`);

// --- functional checks ---------------------------------------------------
let passed = 0;
let failed = 0;
function check(name, cond, detail) {
  if (cond) { passed += 1; console.log(`ok   ${name}`); }
  else { failed += 1; console.log(`FAIL ${name}${detail ? `: ${detail}` : ''}`); }
}

async function post(body) {
  const res = await fetch(tokenUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body,
  });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, json, text };
}

const providerJwks = await (await fetch(`${issuer}/jwks`)).json();

// 1. The contract request: aud = token endpoint URL.
{
  const assertion = signAssertion(tokenUrl);
  const r = await post(tokenBody(assertion));
  check('token request (aud = token endpoint) -> 200', r.status === 200, `${r.status} ${r.text}`);
  check('token_type is Bearer', r.json?.token_type === 'Bearer', r.text);
  check('expires_in is 300', r.json?.expires_in === 300, r.text);
  check('scope is ledger:write', r.json?.scope === SCOPE, r.text);
  const at = r.json?.access_token ?? '';
  const parts = at.split('.');
  check('access_token is a 3-part JWT', parts.length === 3 && parts.every((p) => p.length > 0), at);
  let header = {};
  let claims = {};
  try {
    header = JSON.parse(Buffer.from(parts[0], 'base64url'));
    claims = JSON.parse(Buffer.from(parts[1], 'base64url'));
  } catch { /* checked below */ }
  check('access_token header alg is ES256', header.alg === 'ES256', JSON.stringify(header));
  check('access_token header typ is at+jwt', header.typ === 'at+jwt', JSON.stringify(header));
  const jwk = providerJwks.keys?.find((k) => k.kid === header.kid);
  let sigOk = false;
  if (jwk && parts.length === 3) {
    sigOk = crypto.verify(
      'sha256',
      Buffer.from(`${parts[0]}.${parts[1]}`),
      { key: crypto.createPublicKey({ key: jwk, format: 'jwk' }), dsaEncoding: 'ieee-p1363' },
      Buffer.from(parts[2], 'base64url'),
    );
  }
  check('access_token ES256 signature verifies against peer /jwks', sigOk);
  check('access_token claims: iss, aud, client_id, sub, scope', claims.iss === issuer
    && claims.aud === RESOURCE && claims.client_id === CLIENT_ID && claims.sub === CLIENT_ID
    && claims.scope === SCOPE, JSON.stringify(claims));
  check('access_token lifetime 300 s', claims.exp - claims.iat === 300, JSON.stringify(claims));

  // 2. Replay of the same assertion (same jti) is rejected by the default
  //    in-memory ReplayDetection.
  const replay = await post(tokenBody(assertion));
  check('replayed client_assertion (same jti) -> 401 invalid_client', replay.status === 401 && replay.json?.error === 'invalid_client', `${replay.status} ${replay.text}`);
}

// 3. aud = issuer identifier is accepted too (oidc-provider accepts the
//    issuer, the token endpoint URL and the URL of the endpoint being called).
{
  const r = await post(tokenBody(signAssertion(issuer)));
  check('token request (aud = issuer) -> 200', r.status === 200, `${r.status} ${r.text}`);
}
// 4. A foreign aud is rejected.
{
  const r = await post(tokenBody(signAssertion('https://elsewhere.example/token')));
  check('token request (foreign aud) -> 401 invalid_client', r.status === 401 && r.json?.error === 'invalid_client', `${r.status} ${r.text}`);
}
// 5. Unknown resource indicator is rejected.
{
  const r = await post(tokenBody(signAssertion(tokenUrl), { resource: 'https://other.example.org' }));
  check('unknown resource -> 400 invalid_target', r.status === 400 && r.json?.error === 'invalid_target', `${r.status} ${r.text}`);
}
// 6. Bad signature is rejected.
{
  const a = signAssertion(tokenUrl);
  const bad = `${a.slice(0, -4)}${a.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`;
  const r = await post(tokenBody(bad));
  check('tampered client_assertion signature -> 401 invalid_client', r.status === 401 && r.json?.error === 'invalid_client', `${r.status} ${r.text}`);
}

// 7. No resource parameter: defaultResource picks the one resource server,
//    so the token is still a JWT for https://ledger.example.org.
{
  const body = tokenBody(signAssertion(tokenUrl)).replace(`&resource=${encodeURIComponent(RESOURCE)}`, '');
  const r = await post(body);
  const p = (r.json?.access_token ?? '').split('.');
  let aud;
  try { aud = JSON.parse(Buffer.from(p[1], 'base64url')).aud; } catch { /* below */ }
  check('no resource param -> 200, JWT aud = default resource', r.status === 200 && p.length === 3 && aud === RESOURCE, `${r.status} ${r.text}`);
}

// --- short sequential rate measurement -----------------------------------
if (failed === 0 && opts.requests > 0) {
  const warmup = Math.min(200, opts.requests);
  const total = warmup + opts.requests;
  // Pre-sign every assertion (unique jti each) so the loop measures the peer.
  const bodies = new Array(total);
  for (let i = 0; i < total; i += 1) bodies[i] = tokenBody(signAssertion(tokenUrl));

  const one = async (body) => {
    const res = await fetch(tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body,
    });
    await res.arrayBuffer();
    return res.status;
  };

  for (let i = 0; i < warmup; i += 1) await one(bodies[i]);
  let non200 = 0;
  const t0 = process.hrtime.bigint();
  for (let i = warmup; i < total; i += 1) {
    if ((await one(bodies[i])) !== 200) non200 += 1;
  }
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  check(`all ${opts.requests} timed requests -> 200`, non200 === 0, `${non200} non-200`);
  const rps = opts.requests / secs;
  console.log(`sequential: ${opts.requests} requests in ${secs.toFixed(2)} s = ${rps.toFixed(0)} req/s, `
    + `mean latency ${((secs / opts.requests) * 1e3).toFixed(3)} ms (1 keep-alive connection, plain HTTP, `
    + `peer ${pinned ? 'pinned to CPU 0' : 'unpinned'}, ${warmup} warm-up requests excluded)`);
}

killServer();
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 ? 0 : 1;
