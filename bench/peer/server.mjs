// Side-by-side benchmark peer for Tessera: a minimal oidc-provider OAuth 2.0
// authorization server serving only the client_credentials grant with
// private_key_jwt (ES256) client authentication, issuing ES256-signed JWT
// access tokens for one resource server.
//
// Usage: node server.mjs --port PORT --client-jwks PATH
//
// Plain HTTP on 127.0.0.1:PORT (no TLS). Prints `READY http://127.0.0.1:PORT/token`
// on stdout once listening.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

const CLIENT_ID = 'bench-client';
const SCOPE = 'ledger:write';
const RESOURCE = 'https://ledger.example.org';
const ACCESS_TOKEN_TTL = 300;

function usage(msg) {
  if (msg) process.stderr.write(`server.mjs: ${msg}\n`);
  process.stderr.write('usage: node server.mjs --port PORT --client-jwks PATH\n');
  process.exit(2);
}

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    let name;
    let value;
    if (a.startsWith('--') && a.includes('=')) {
      name = a.slice(2, a.indexOf('='));
      value = a.slice(a.indexOf('=') + 1);
    } else if (a.startsWith('--')) {
      name = a.slice(2);
      value = argv[i + 1];
      i += 1;
      if (value === undefined) usage(`missing value for --${name}`);
    } else {
      usage(`unexpected argument ${a}`);
    }
    if (name !== 'port' && name !== 'client-jwks') usage(`unknown option --${name}`);
    out[name] = value;
  }
  return out;
}

const args = parseArgs(process.argv.slice(2));
if (!args.port) usage('--port is required');
if (!args['client-jwks']) usage('--client-jwks is required');
const port = Number(args.port);
if (!Number.isInteger(port) || port < 1 || port > 65535) usage(`bad --port ${args.port}`);

let clientJwks;
try {
  clientJwks = JSON.parse(fs.readFileSync(args['client-jwks'], 'utf8'));
} catch (err) {
  usage(`cannot read --client-jwks ${args['client-jwks']}: ${err.message}`);
}
if (!clientJwks || !Array.isArray(clientJwks.keys) || clientJwks.keys.length === 0) {
  usage('--client-jwks must be a JSON file {"keys":[<EC P-256 public JWK with kid>]}');
}
for (const k of clientJwks.keys) {
  if (k.kty !== 'EC' || k.crv !== 'P-256' || !k.kid) usage('client JWKS keys must be EC P-256 JWKs with a kid');
  if (k.d) usage('client JWKS must contain public keys only');
}

// Provider signing key: fresh ES256 key per start-up.
const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const providerJwk = {
  ...privateKey.export({ format: 'jwk' }),
  kid: `peer-${crypto.randomBytes(6).toString('hex')}`,
  alg: 'ES256',
  use: 'sig',
};

const issuer = `http://127.0.0.1:${port}`;

const resourceServer = {
  scope: SCOPE,
  audience: RESOURCE,
  accessTokenTTL: ACCESS_TOKEN_TTL,
  accessTokenFormat: 'jwt',
  jwt: { sign: { alg: 'ES256' } },
};

const configuration = {
  // Default (in-memory, LRU) adapter: no `adapter` given. It backs the
  // client-assertion jti replay detection. JWT access tokens are not stored.
  clients: [{
    client_id: CLIENT_ID,
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'ES256',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: SCOPE,
    jwks: { keys: clientJwks.keys },
  }],
  jwks: { keys: [providerJwk] },
  scopes: [SCOPE],
  clientAuthMethods: ['private_key_jwt'],
  // Only ES256 anywhere we can say so.
  enabledJWA: {
    clientAuthSigningAlgValues: ['ES256'],
    idTokenSigningAlgValues: ['ES256'],
  },
  clientDefaults: {
    grant_types: ['client_credentials'],
    response_types: [],
    id_token_signed_response_alg: 'ES256',
    token_endpoint_auth_method: 'private_key_jwt',
  },
  ttl: {
    ClientCredentials: ACCESS_TOKEN_TTL,
  },
  features: {
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // No resource parameter -> still use the one resource server.
      defaultResource: () => RESOURCE,
      // Not relevant to client_credentials (no grant), kept explicit.
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resourceIndicator) => {
        if (resourceIndicator === RESOURCE) return resourceServer;
        throw new errors.InvalidTarget();
      },
    },
    // Everything not needed for client_credentials is switched off.
    devInteractions: { enabled: false },
    dPoP: { enabled: false },
    rpInitiatedLogout: { enabled: false },
    pushedAuthorizationRequests: { enabled: false },
    userinfo: { enabled: false },
    introspection: { enabled: false },
    revocation: { enabled: false },
    registration: { enabled: false },
  },
  // Never called for client_credentials; defined so the provider does not
  // warn about the development-only default.
  findAccount: async () => undefined,
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
};

// oidc-provider prints "NOTICE"/"WARNING" lines for development-only defaults
// via console.warn/console.info at construction; keep stdout clean for the
// READY line by routing them to stderr.
const origInfo = console.info;
const origLog = console.log;
console.info = (...a) => console.error(...a);
console.log = (...a) => console.error(...a);
let provider;
try {
  provider = new Provider(issuer, configuration);
} finally {
  console.info = origInfo;
  console.log = origLog;
}

// oidc-provider does not log requests itself (only via the `debug` module
// when DEBUG=oidc-provider:* is set). Unexpected server errors are emitted as
// 'server_error'; print those to stderr so a broken setup is visible, but
// nothing for ordinary 4xx outcomes.
provider.on('server_error', (_ctx, err) => {
  process.stderr.write(`server_error: ${err && err.stack ? err.stack : err}\n`);
});

const server = http.createServer(provider.callback());
// Keep-alive friendly for a load generator reusing connections.
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.requestTimeout = 0;

server.on('error', (err) => {
  process.stderr.write(`listen error: ${err.message}\n`);
  process.exit(1);
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`READY ${issuer}/token\n`);
});

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
