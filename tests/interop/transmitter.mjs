// A Shared Signals transmitter for tower-bearer's SSF tests: Security
// Event Tokens (RFC 8417) signed with the `jose` package, delivered by
// push (RFC 8935, this process POSTs them) or poll (RFC 8936, this process
// serves them).
//
// Environment:
//   PORT       port on 127.0.0.1 (0: any free port)
//
// Prints `listening on http://127.0.0.1:PORT` once it accepts connections;
// that URL is the transmitter's issuer.
//
// Endpoints:
//   GET  /.well-known/ssf-configuration   SSF 1.0 §7.1 metadata
//   GET  /jwks                            the published key (ES256, kid t1)
//   POST /test/sign   {payload, typ?, kid?, alg?}  -> {set}
//        Signs `payload` as given (no claim is added). `typ` defaults to
//        `secevent+jwt` (null: none); `kid` `stranger` signs with a key
//        that is not published; `alg` `RS256` with another unpublished key.
//   POST /test/push   {endpoint, set, authorization?, contentType?}
//        -> {status, body}: POSTs the SET to a receiver, as RFC 8935 says.
//   POST /test/queue  {sets: [compact SET, ...]}: queued for polling.
//   GET  /test/acks   -> {acks: [jti], errs: {jti: {err, description}}}
//   POST /poll        RFC 8936 §2.4 poll endpoint; needs
//        `Authorization: Bearer poll-secret`. Queued SETs stay pending
//        until acknowledged; at most `maxEvents` per answer.

import { createServer } from 'node:http';

import { SignJWT, decodeJwt, exportJWK, generateKeyPair } from 'jose';

const POLL_AUTHORIZATION = 'Bearer poll-secret';

const published = await generateKeyPair('ES256', { extractable: true });
const stranger = await generateKeyPair('ES256');
const rsa = await generateKeyPair('RS256', { modulusLength: 2048 });
const jwk = { ...(await exportJWK(published.publicKey)), kid: 't1', alg: 'ES256', use: 'sig' };

// Pending SETs by jti, in the order queued; acknowledgements and errors.
const pending = new Map();
const acks = [];
const errs = {};

async function body(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : {};
}

function json(res, status, value) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
}

async function sign({ payload, typ = 'secevent+jwt', kid = 't1', alg = 'ES256' }) {
  const header = { alg, kid };
  if (typ !== null) header.typ = typ;
  let key = published.privateKey;
  if (alg === 'RS256') key = rsa.privateKey;
  else if (kid === 'stranger') key = stranger.privateKey;
  return new SignJWT(payload).setProtectedHeader(header).sign(key);
}

async function push({ endpoint, set, authorization, contentType = 'application/secevent+jwt' }) {
  const headers = { 'content-type': contentType, accept: 'application/json' };
  if (authorization !== undefined) headers.authorization = authorization;
  const res = await fetch(endpoint, { method: 'POST', headers, body: set });
  return { status: res.status, body: await res.text() };
}

function poll(request) {
  for (const jti of request.ack ?? []) {
    if (pending.delete(jti)) acks.push(jti);
  }
  for (const [jti, err] of Object.entries(request.setErrs ?? {})) {
    if (pending.delete(jti)) errs[jti] = err;
  }
  const max = request.maxEvents ?? pending.size;
  const sets = {};
  for (const [jti, set] of [...pending].slice(0, max)) sets[jti] = set;
  return { sets, moreAvailable: pending.size > Object.keys(sets).length };
}

const server = createServer(async (req, res) => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  try {
    const route = `${req.method} ${req.url}`;
    if (route === 'GET /.well-known/ssf-configuration') {
      return json(res, 200, {
        spec_version: '1_0',
        issuer,
        jwks_uri: `${issuer}/jwks`,
        delivery_methods_supported: [
          'urn:ietf:rfc:8935',
          'urn:ietf:rfc:8936',
        ],
      });
    }
    if (route === 'GET /jwks') return json(res, 200, { keys: [jwk] });
    if (route === 'POST /test/sign') return json(res, 200, { set: await sign(await body(req)) });
    if (route === 'POST /test/push') return json(res, 200, await push(await body(req)));
    if (route === 'POST /test/queue') {
      for (const set of (await body(req)).sets) pending.set(decodeJwt(set).jti, set);
      return json(res, 200, { pending: pending.size });
    }
    if (route === 'GET /test/acks') return json(res, 200, { acks, errs });
    if (route === 'POST /poll') {
      if (req.headers.authorization !== POLL_AUTHORIZATION) {
        return json(res, 401, { err: 'authentication_failed' });
      }
      return json(res, 200, poll(await body(req)));
    }
    json(res, 404, { error: 'not found' });
  } catch (e) {
    json(res, 500, { error: String(e) });
  }
});

server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
