// Test-only: reads {"list_jwt", "jwks", "tokens": [...], "idx": [...]} as JSON on stdin and
// prints what an independent implementation makes of a Tessera status list: the header and
// claims, whether the signature verifies against the JWKS (Node's WebCrypto), the list size,
// how many entries are 1, the status at each requested index, and each token's status claim.
// Decoding uses @sd-jwt/jwt-status-list only (getListFromStatusListJWT, getStatusListFromJWT).
import { webcrypto } from "node:crypto";
import { getListFromStatusListJWT, getStatusListFromJWT } from "@sd-jwt/jwt-status-list";

const b64url = (s) => Buffer.from(s, "base64url");

async function signatureValid(jwt, jwks) {
  const [h, p, s] = jwt.split(".");
  const header = JSON.parse(b64url(h).toString());
  const jwk = (jwks?.keys ?? []).find((k) => k.kid === header.kid);
  if (!jwk) return false;
  const algs = {
    ES256: [{ name: "ECDSA", namedCurve: "P-256" }, { name: "ECDSA", hash: "SHA-256" }],
    EdDSA: [{ name: "Ed25519" }, { name: "Ed25519" }],
  };
  const [importAlg, verifyAlg] = algs[header.alg] ?? [];
  if (!importAlg) return false;
  const key = await webcrypto.subtle.importKey("jwk", jwk, importAlg, false, ["verify"]);
  return webcrypto.subtle.verify(verifyAlg, key, b64url(s), Buffer.from(`${h}.${p}`));
}

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString());
const jwt = input.list_jwt.trim();
const [h, p] = jwt.split(".");
const list = getListFromStatusListJWT(jwt);
const all = list.statusList;
const out = {
  header: JSON.parse(b64url(h).toString()),
  claims: JSON.parse(b64url(p).toString()),
  signature_valid: input.jwks ? await signatureValid(jwt, input.jwks) : null,
  size: all.length,
  ones: all.reduce((n, v) => n + (v === 1 ? 1 : 0), 0),
  statuses: (input.idx ?? []).map((i) => list.getStatus(i)),
  token_refs: (input.tokens ?? []).map((t) => getStatusListFromJWT(t)),
};
delete out.claims.status_list.lst;
process.stdout.write(JSON.stringify(out));
