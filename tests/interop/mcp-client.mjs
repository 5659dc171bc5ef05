// An MCP client for tower-bearer's interop tests, built on the official MCP
// TypeScript SDK (@modelcontextprotocol/sdk): MCP authorization as an
// implementation we did not write does it, against an MCP server behind
// tower-bearer's layer.
//
// 1. An MCP initialize request without a token: its status and
//    WWW-Authenticate challenge, and the resource metadata URL in it
//    (the SDK's extractWWWAuthenticateParams).
// 2. The protected resource metadata (RFC 9728) at that URL and the
//    metadata of its first authorization server (RFC 8414 / OpenID
//    discovery), with the SDK's discovery functions.
// 3. An SDK Client over StreamableHTTPClientTransport with the SDK's
//    ClientCredentialsProvider: the SDK itself meets the 401, discovers the
//    authorization server and gets a token with the client credentials
//    grant and the RFC 8707 resource parameter. It lists the tools and
//    calls `whoami` without arguments.
// 4. An MCP request with OTHER_TOKEN, a token for another audience: its
//    status and challenge.
//
// Environment:
//   MCP_URL        the MCP endpoint, e.g. http://127.0.0.1:PORT/mcp
//   CLIENT_ID      the client credentials the SDK uses (e.g. mcp-client,
//   CLIENT_SECRET  mcp-client-secret at idp.mjs)
//   OTHER_TOKEN    an access token for another audience
//   ISSUER         optional: the authorization server the credentials
//                  belong to (the SDK's expectedIssuer); by default the one
//                  the resource metadata names
//
// stdout, last line: one JSON object,
//   {"unauthenticated_status", "challenge", "resource_metadata_url",
//    "resource_metadata", "authorization_server",
//    "authorization_server_issuer", "token_resource", "token_request",
//    "token_claims", "tools", "call", "other_audience_status",
//    "other_audience_challenge", "requests"}
// (token_request: what the SDK sent to the token endpoint; token_claims:
// the access token's payload, not verified; requests: every request the
// SDK made, in order). On failure: the error on stderr, exit status 1.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  discoverAuthorizationServerMetadata,
  discoverOAuthProtectedResourceMetadata,
  extractWWWAuthenticateParams,
} from '@modelcontextprotocol/sdk/client/auth.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';

const TIMEOUT_MS = 30_000;

function fail(message) {
  process.stderr.write(`mcp-client: ${message}\n`);
  process.exit(1);
}

function env(name, { optional = false } = {}) {
  const value = process.env[name];
  if (value === undefined || value === '') {
    if (optional) return undefined;
    fail(`${name} is not set`);
  }
  return value;
}

// An MCP initialize request, sent by hand (steps 1 and 4).
async function initialize(url, token) {
  const headers = {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
  };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(url, {
    method: 'POST',
    headers,
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: {
        protocolVersion: LATEST_PROTOCOL_VERSION,
        capabilities: {},
        clientInfo: { name: 'tower-bearer-interop', version: '0.0.0' },
      },
    }),
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  await response.body?.cancel();
  return response;
}

// What the client authenticated with at the token endpoint.
function clientAuth(headers, form) {
  const authorization = headers.get('authorization') ?? '';
  if (/^basic /i.test(authorization)) return 'client_secret_basic';
  if (form.has('client_secret')) return 'client_secret_post';
  if (form.has('client_assertion')) return 'private_key_jwt';
  return 'none';
}

// The SDK's fetch (its `fetch` option), recording every request it makes
// and the form of its token requests.
function recordingFetch(log) {
  return async (input, init = {}) => {
    const url = input instanceof Request ? input.url : String(input);
    const method = init.method ?? (input instanceof Request ? input.method : 'GET');
    const entry = { method, url };
    log.requests.push(entry);
    if (init.body instanceof URLSearchParams && init.body.has('grant_type')) {
      const form = init.body;
      log.tokenRequests.push({
        url,
        grant_type: form.get('grant_type'),
        resource: form.getAll('resource'),
        scope: form.get('scope'),
        client_auth: clientAuth(new Headers(init.headers), form),
      });
    }
    const response = await fetch(input, init);
    entry.status = response.status;
    return response;
  };
}

function claims(token) {
  try {
    return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
  } catch {
    return null;
  }
}

async function main() {
  const mcpUrl = env('MCP_URL');
  const clientId = env('CLIENT_ID');
  const clientSecret = env('CLIENT_SECRET');
  const otherToken = env('OTHER_TOKEN');
  const expectedIssuer = env('ISSUER', { optional: true });

  // 1. No token.
  const unauthenticated = await initialize(mcpUrl);
  const challenge = unauthenticated.headers.get('www-authenticate');
  const { resourceMetadataUrl } = extractWWWAuthenticateParams(unauthenticated);
  if (!resourceMetadataUrl) {
    fail(`no resource_metadata in the ${unauthenticated.status} answer's WWW-Authenticate: ${challenge}`);
  }

  // 2. Discovery.
  const resourceMetadata = await discoverOAuthProtectedResourceMetadata(mcpUrl, { resourceMetadataUrl });
  const authorizationServer = resourceMetadata.authorization_servers?.[0];
  if (!authorizationServer) fail(`the resource metadata names no authorization server: ${JSON.stringify(resourceMetadata)}`);
  const asMetadata = await discoverAuthorizationServerMetadata(authorizationServer);
  if (!asMetadata) fail(`no authorization server metadata found for ${authorizationServer}`);

  // 3. The SDK on its own. Its ClientCredentialsProvider asks for the
  // scope it is given and nothing else (not the challenge's, not the
  // metadata's): it is given the scopes the metadata lists.
  const log = { requests: [], tokenRequests: [] };
  const authProvider = new ClientCredentialsProvider({
    clientId,
    clientSecret,
    expectedIssuer: expectedIssuer ?? authorizationServer,
    scope: resourceMetadata.scopes_supported?.join(' ') || undefined,
  });
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), {
    authProvider,
    fetch: recordingFetch(log),
  });
  const client = new Client({ name: 'tower-bearer-interop', version: '0.0.0' });
  await client.connect(transport);
  const { tools } = await client.listTools();
  const call = await client.callTool({ name: 'whoami' });
  await client.close();
  const [tokenRequest] = log.tokenRequests;
  if (!tokenRequest) fail('the SDK connected without asking for a token');
  const accessToken = (await authProvider.tokens())?.access_token;

  // 4. A token for another audience.
  const other = await initialize(mcpUrl, otherToken);

  return {
    unauthenticated_status: unauthenticated.status,
    challenge,
    resource_metadata_url: resourceMetadataUrl.href,
    resource_metadata: resourceMetadata,
    authorization_server: authorizationServer,
    authorization_server_issuer: asMetadata.issuer,
    token_resource: tokenRequest.resource.length === 1 ? tokenRequest.resource[0] : tokenRequest.resource,
    token_request: tokenRequest,
    token_claims: accessToken ? claims(accessToken) : null,
    tools: tools.map(({ name }) => name),
    call,
    other_audience_status: other.status,
    other_audience_challenge: other.headers.get('www-authenticate'),
    requests: log.requests.map(({ method, url, status }) => `${method} ${url} ${status ?? 'failed'}`),
  };
}

const timer = setTimeout(() => fail(`no result after ${TIMEOUT_MS} ms`), TIMEOUT_MS);
main().then(
  (result) => {
    clearTimeout(timer);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exit(0);
  },
  (err) => {
    const cause = err?.cause ? ` (${err.cause.message ?? err.cause})` : '';
    fail(`${err?.message ?? err}${cause}\n${err?.stack ?? ''}`);
  },
);
