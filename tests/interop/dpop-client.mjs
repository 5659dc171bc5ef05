// A DPoP client for tower-bearer's interop tests, built on panva's `dpop`
// package: an implementation of RFC 9449 we did not write. It holds one key
// pair and prints a fresh proof for each request it reads.
//
// stdin, one JSON object a line:
//   {"htm": "GET", "htu": "http://127.0.0.1:3000/me", "accessToken": "…", "nonce": "…"}
//     accessToken and nonce are optional (absent or null);
//   {"newKey": "ES256"}   switch to a new key pair (ES256, PS256, RS256, Ed25519).
// stdout, one line each: the proof; for a new key pair (and once at start),
// `key <jkt>` with the key's RFC 7638 thumbprint.

import { createInterface } from 'node:readline';

import * as DPoP from 'dpop';

let keypair = await DPoP.generateKeyPair('ES256');
console.log(`key ${await DPoP.calculateThumbprint(keypair.publicKey)}`);

for await (const line of createInterface({ input: process.stdin })) {
  const request = JSON.parse(line);
  if (request.newKey) {
    keypair = await DPoP.generateKeyPair(request.newKey);
    console.log(`key ${await DPoP.calculateThumbprint(keypair.publicKey)}`);
    continue;
  }
  const { htu, htm, nonce, accessToken } = request;
  console.log(await DPoP.generateProof(keypair, htu, htm, nonce ?? undefined, accessToken ?? undefined));
}
