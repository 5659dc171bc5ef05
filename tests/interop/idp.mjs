// A real authorization server for tower-bearer's interop tests: panva's
// oidc-provider (OpenID Certified), configured for the client credentials
// grant with resource indicators, JWT access tokens signed with RS256,
// PS256, ES256 and EdDSA, opaque access tokens for a second resource,
// token introspection and revocation, and sender-constrained tokens: DPoP
// (RFC 9449) and certificate-bound tokens (RFC 8705, the certificate
// passed in the x-client-cert header as URL-encoded PEM).
//
// Two more parts:
// - MCP: any resource indicator `http://127.0.0.1:PORT/mcp` (an MCP server
//   on loopback) gets RS256 JWT access tokens with that audience and the
//   scope `mcp:tools`, for the confidential client `mcp-client`
//   (client_secret_basic, client credentials grant), which may also ask for
//   `mcp:tools` at `urn:other-api` (a token for another audience).
// - A user login without a browser, for step-up tests (RFC 9470): the
//   confidential client `user-client` runs the authorization code flow
//   (redirect_uri https://client.example/cb, never called) and this server
//   answers its own interaction URL, `/interaction/:uid`, by logging in the
//   account `alice` and granting every scope asked for. The login's acr is
//   the first value of the request's `acr_values` (else
//   `urn:tower-bearer:pwd`); its time is now minus the authorization
//   request's extra parameter `test_auth_age` (seconds, default 0). JWT
//   access tokens issued for an authorization code carry `acr` and
//   `auth_time`. user-token.mjs drives this flow.
//
// Environment:
//   PORT       port on 127.0.0.1 (0: any free port)
//
// Prints `listening on http://127.0.0.1:PORT` once it accepts connections.
// `POST /test/rotate` puts a new RS256 signing key in front of the old
// ones, on the same address and without a restart: a new provider with
// the new key set answers every request from then on.

import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';

import Provider, { errors } from 'oidc-provider';

const RESOURCES = {
  'urn:tower-bearer:rs256': 'RS256',
  'urn:tower-bearer:ps256': 'PS256',
  'urn:tower-bearer:es256': 'ES256',
  'urn:tower-bearer:eddsa': 'EdDSA',
  'urn:other-api': 'RS256',
};
const OPAQUE = 'urn:tower-bearer:opaque';
const SCOPES = 'read write admin';
// An MCP server's resource identifier (MCP authorization: RFC 8707 with
// the server's canonical URL).
const MCP_RESOURCE = /^http:\/\/127\.0\.0\.1:\d+\/mcp$/;
const MCP_SCOPE = 'mcp:tools';
// The one account the interaction endpoint logs in, and its default acr.
const ACCOUNT = 'alice';
const DEFAULT_ACR = 'urn:tower-bearer:pwd';
// The same cookie keys for every provider, so that a login under way
// survives a key rotation.
const COOKIE_KEYS = [randomBytes(32).toString('base64url')];

function signingKey(type, alg, options) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), alg, use: 'sig', kid: `${alg}-${randomUUID().slice(0, 8)}` };
}

let keys = [
  signingKey('rsa', 'RS256', { modulusLength: 2048 }),
  signingKey('rsa', 'PS256', { modulusLength: 2048 }),
  signingKey('ec', 'ES256', { namedCurve: 'P-256' }),
  signingKey('ed25519', 'EdDSA'),
];

function jwtResource(audience, scope, alg) {
  return {
    scope,
    audience,
    accessTokenFormat: 'jwt',
    accessTokenTTL: 300,
    jwt: { sign: { alg } },
  };
}

function provider(issuer) {
  const p = new Provider(issuer, {
    jwks: { keys },
    cookies: { keys: COOKIE_KEYS },
    // DPoP proofs of every algorithm the dpop package makes.
    enabledJWA: { dPoPSigningAlgValues: ['ES256', 'Ed25519', 'EdDSA', 'PS256', 'RS256'] },
    scopes: ['openid', ...SCOPES.split(' '), MCP_SCOPE],
    // How long ago the test user logged in, in seconds (see the interaction
    // endpoint below).
    extraParams: {
      test_auth_age(ctx, value) {
        if (value !== undefined && !/^\d+$/.test(value)) {
          throw new errors.InvalidRequest('test_auth_age must be a number of seconds');
        }
      },
    },
    // oidc-provider leaves acr and auth_time out of access tokens: an
    // access token for an authorization code gets the code's.
    extraTokenClaims(ctx, token) {
      const code = ctx?.oidc?.entities?.AuthorizationCode;
      if (token.gty !== 'authorization_code' || !code) return undefined;
      return { acr: code.acr, auth_time: code.authTime };
    },
    clients: [
      {
        client_id: 'interop-client',
        client_secret: 'interop-client-secret',
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        scope: SCOPES,
      },
      {
        // Its access tokens are bound to its TLS client certificate (RFC
        // 8705), which it shows in the x-client-cert header, as a
        // TLS-terminating proxy would pass it on.
        client_id: 'mtls-client',
        client_secret: 'mtls-client-secret',
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        scope: SCOPES,
        tls_client_certificate_bound_access_tokens: true,
      },
      {
        // The resource server itself, for introspection.
        client_id: 'resource-server',
        client_secret: 'resource-server-secret',
        grant_types: [],
        redirect_uris: [],
        response_types: [],
      },
      {
        // An MCP client; client_secret_basic is what the MCP SDK's
        // ClientCredentialsProvider picks from this server's metadata.
        client_id: 'mcp-client',
        client_secret: 'mcp-client-secret',
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        scope: MCP_SCOPE,
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        // A user's application: authorization code flow, logged in by the
        // interaction endpoint below.
        client_id: 'user-client',
        client_secret: 'user-client-secret',
        grant_types: ['authorization_code'],
        redirect_uris: ['https://client.example/cb'],
        response_types: ['code'],
        scope: `openid ${SCOPES}`,
      },
    ],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      // DPoP (RFC 9449) is on by default: a token request with a DPoP proof
      // gets a token bound to the proof's key (cnf.jkt).
      dPoP: { enabled: true },
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        getCertificate(ctx) {
          const pem = ctx.get('x-client-cert');
          return pem ? decodeURIComponent(pem) : undefined;
        },
      },
      resourceIndicators: {
        enabled: true,
        useGrantedResource: () => true,
        getResourceServerInfo(ctx, resource) {
          if (resource === OPAQUE) {
            return { scope: SCOPES, accessTokenFormat: 'opaque', accessTokenTTL: 300 };
          }
          if (MCP_RESOURCE.test(resource)) {
            return jwtResource(resource, MCP_SCOPE, 'RS256');
          }
          const alg = RESOURCES[resource];
          if (!alg) throw new errors.InvalidTarget();
          // urn:other-api also takes mcp:tools: a token for the wrong
          // audience that has the right scope.
          const scope = resource === 'urn:other-api' ? `${SCOPES} ${MCP_SCOPE}` : SCOPES;
          return jwtResource(resource, scope, alg);
        },
      },
    },
  });
  p.proxy = false;
  return p;
}

// The interaction endpoint: no login page, no consent page. A login
// prompt logs `alice` in, a consent prompt grants what is missing; each
// answers with a redirect back to the authorization endpoint.
async function interact(p, req, res) {
  const { prompt, params, session, grantId } = await p.interactionDetails(req, res);
  if (prompt.name === 'login') {
    const acr = (params.acr_values ?? '').split(' ').find(Boolean) ?? DEFAULT_ACR;
    const ts = Math.floor(Date.now() / 1000) - Number(params.test_auth_age ?? 0);
    const login = { accountId: ACCOUNT, acr, amr: ['pwd'], ts, remember: false };
    await p.interactionFinished(req, res, { login }, { mergeWithLastSubmission: false });
    return;
  }
  if (prompt.name === 'consent') {
    const grant = grantId
      ? await p.Grant.find(grantId)
      : new p.Grant({ accountId: session.accountId, clientId: params.client_id });
    const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
    if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
    if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const consent = { grantId: await grant.save() };
    await p.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
    return;
  }
  throw new Error(`unexpected prompt ${prompt.name}`);
}

const server = createServer();
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  let current = provider(issuer);
  let answer = current.callback();
  server.on('request', (req, res) => {
    if (req.method === 'POST' && req.url === '/test/rotate') {
      keys = [signingKey('rsa', 'RS256', { modulusLength: 2048 }), ...keys];
      current = provider(issuer);
      answer = current.callback();
      res.end('rotated');
      return;
    }
    if (req.method === 'GET' && /^\/interaction\/[^/?]+$/.test(req.url)) {
      interact(current, req, res).catch((err) => {
        res.statusCode = 400;
        res.setHeader('content-type', 'text/plain');
        res.end(`interaction failed: ${err.message}\n`);
      });
      return;
    }
    answer(req, res);
  });
  console.log(`listening on ${issuer}`);
});
