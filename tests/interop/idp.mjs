// A real authorization server for tower-bearer's interop tests: panva's
// oidc-provider (OpenID Certified), configured for the client credentials
// grant with resource indicators, JWT access tokens signed with RS256,
// PS256, ES256 and EdDSA, opaque access tokens for a second resource,
// token introspection and revocation, and sender-constrained tokens: DPoP
// (RFC 9449) and certificate-bound tokens (RFC 8705, the certificate
// passed in the x-client-cert header as URL-encoded PEM).
//
// Environment:
//   PORT       port on 127.0.0.1 (0: any free port)
//
// Prints `listening on http://127.0.0.1:PORT` once it accepts connections.
// `POST /test/rotate` puts a new RS256 signing key in front of the old
// ones, on the same address and without a restart: a new provider with
// the new key set answers every request from then on.

import { generateKeyPairSync, randomUUID } from 'node:crypto';
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

function provider(issuer) {
  const p = new Provider(issuer, {
    jwks: { keys },
    // DPoP proofs of every algorithm the dpop package makes.
    enabledJWA: { dPoPSigningAlgValues: ['ES256', 'Ed25519', 'EdDSA', 'PS256', 'RS256'] },
    scopes: SCOPES.split(' '),
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
          const alg = RESOURCES[resource];
          if (!alg) throw new errors.InvalidTarget();
          return {
            scope: SCOPES,
            audience: resource,
            accessTokenFormat: 'jwt',
            accessTokenTTL: 300,
            jwt: { sign: { alg } },
          };
        },
      },
    },
  });
  p.proxy = false;
  return p.callback();
}

const server = createServer();
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  let answer = provider(issuer);
  server.on('request', (req, res) => {
    if (req.method === 'POST' && req.url === '/test/rotate') {
      keys = [signingKey('rsa', 'RS256', { modulusLength: 2048 }), ...keys];
      answer = provider(issuer);
      res.end('rotated');
      return;
    }
    answer(req, res);
  });
  console.log(`listening on ${issuer}`);
});
