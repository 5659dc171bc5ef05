// A user's access token from idp.mjs, for tower-bearer's step-up tests
// (RFC 9470): the authorization code flow of the client `user-client`
// (with PKCE S256 and the RFC 8707 resource parameter on both requests),
// driven over HTTP without a browser. idp.mjs answers its own interaction
// URL by logging in `alice`; this script follows the redirects itself
// (fetch with redirect: 'manual'), carrying the cookies from one step to
// the next, until the redirect to https://client.example/cb, whose code it
// exchanges at the token endpoint.
//
// Environment:
//   ISSUER     the IdP, e.g. http://127.0.0.1:PORT
//   RESOURCE   the resource indicator, e.g. urn:tower-bearer:rs256
//   SCOPE      the scope asked for (default `read`); `openid` is always
//              added (acr_values needs it), the access token has the
//              resource's scopes of these
//   ACR        optional: sent as acr_values, becomes the token's acr
//   AUTH_AGE   optional: seconds since the login (test_auth_age), making
//              the token's auth_time that much older
//
// stdout: the access token alone on one line, exit status 0. On failure a
// message on stderr and exit status 1.

import { createHash, randomBytes } from 'node:crypto';

const CLIENT_ID = 'user-client';
const CLIENT_SECRET = 'user-client-secret';
const REDIRECT_URI = 'https://client.example/cb';
const MAX_REDIRECTS = 10;

function fail(message) {
  process.stderr.write(`user-token: ${message}\n`);
  process.exit(1);
}

function env(name, fallback) {
  const value = process.env[name];
  if (value !== undefined && value !== '') return value;
  if (fallback === undefined) fail(`${name} is not set`);
  return fallback;
}

// A cookie jar just big enough for this flow: cookies by name and path,
// sent to the IdP's origin on the paths they were set for.
class Jar {
  #cookies = new Map();

  take(response, url) {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let path = url.pathname.replace(/\/[^/]*$/, '') || '/';
      let expired = false;
      for (const attribute of attributes) {
        const [key, ...rest] = attribute.split('=');
        const v = rest.join('=').trim();
        switch (key.trim().toLowerCase()) {
          case 'path':
            path = v || '/';
            break;
          case 'max-age':
            expired ||= Number(v) <= 0;
            break;
          case 'expires':
            expired ||= Date.parse(v) <= Date.now();
            break;
          default:
        }
      }
      const key = `${name};${path}`;
      if (expired) this.#cookies.delete(key);
      else this.#cookies.set(key, { name, value, path });
    }
  }

  header(url) {
    const matches = (path) =>
      url.pathname === path || url.pathname.startsWith(path.endsWith('/') ? path : `${path}/`);
    return [...this.#cookies.values()]
      .filter(({ path }) => matches(path))
      .map(({ name, value }) => `${name}=${value}`)
      .join('; ');
  }
}

// The text of an error page or body, for the message.
async function said(response) {
  const text = await response.text().catch(() => '');
  return text.replace(/<(script|style)[^]*?<\/\1>/gi, ' ').replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 500);
}

async function main() {
  const issuer = env('ISSUER').replace(/\/$/, '');
  const resource = env('RESOURCE');
  // oidc-provider refuses acr_values without openid.
  const scopes = new Set(['openid', ...env('SCOPE', 'read').split(' ').filter(Boolean)]);
  const scope = [...scopes].join(' ');
  const acr = env('ACR', '');
  const authAge = env('AUTH_AGE', '');

  const discovery = await fetch(`${issuer}/.well-known/openid-configuration`, {
    signal: AbortSignal.timeout(10_000),
  });
  if (!discovery.ok) fail(`discovery at ${issuer} answered ${discovery.status}: ${await said(discovery)}`);
  const metadata = await discovery.json();

  const verifier = randomBytes(32).toString('base64url');
  const state = randomBytes(16).toString('base64url');
  const authorization = new URL(metadata.authorization_endpoint);
  const params = {
    response_type: 'code',
    client_id: CLIENT_ID,
    redirect_uri: REDIRECT_URI,
    scope,
    resource,
    state,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
  };
  if (acr) params.acr_values = acr;
  if (authAge) params.test_auth_age = authAge;
  for (const [key, value] of Object.entries(params)) authorization.searchParams.set(key, value);

  // Authorization endpoint -> interaction -> authorization endpoint (resume)
  // -> ... -> the client's redirect URI.
  const jar = new Jar();
  let url = authorization;
  let callback;
  for (let hop = 0; hop <= MAX_REDIRECTS && !callback; hop += 1) {
    const cookie = jar.header(url);
    const response = await fetch(url, {
      redirect: 'manual',
      headers: cookie ? { cookie } : {},
      signal: AbortSignal.timeout(10_000),
    });
    jar.take(response, url);
    const location = response.headers.get('location');
    if (response.status < 300 || response.status > 399 || !location) {
      fail(`${url.origin}${url.pathname} answered ${response.status} instead of a redirect: ${await said(response)}`);
    }
    await response.body?.cancel();
    const next = new URL(location, url);
    if (next.href.startsWith(REDIRECT_URI)) callback = next;
    else url = next;
  }
  if (!callback) fail(`no redirect to ${REDIRECT_URI} after ${MAX_REDIRECTS} redirects`);

  const answer = callback.searchParams;
  if (answer.get('error')) {
    fail(`authorization failed: ${answer.get('error')}: ${answer.get('error_description') ?? ''}`);
  }
  if (answer.get('state') !== state) fail('the redirect carries the wrong state');
  const code = answer.get('code');
  if (!code) fail(`the redirect carries no code: ${callback.href}`);

  const response = await fetch(metadata.token_endpoint, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64')}`,
      accept: 'application/json',
    },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: REDIRECT_URI,
      code_verifier: verifier,
      resource,
    }),
    signal: AbortSignal.timeout(10_000),
  });
  if (!response.ok) fail(`token request answered ${response.status}: ${await said(response)}`);
  const tokens = await response.json();
  if (typeof tokens.access_token !== 'string') fail(`no access_token in ${JSON.stringify(tokens)}`);
  process.stdout.write(`${tokens.access_token}\n`);
}

main().catch((err) => fail(err?.cause ? `${err.message}: ${err.cause.message ?? err.cause}` : String(err?.stack ?? err)));
