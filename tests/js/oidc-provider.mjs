// A real OpenID provider for Keyward's end-to-end tests: the certified `oidc-provider`
// package on loopback, with the client-credentials grant and JWT access tokens.
//
// Keyward's web page signs people in as a public client (`keyward-ui`: authorization code
// with PKCE, the provider's development login and consent forms, where any name is an
// account); the accounts' claims are in ACCOUNTS.
//
// Prints one JSON line `{"issuer": "http://127.0.0.1:PORT"}` once it listens.
// Test-only endpoints (not part of OpenID):
//   GET  /_test/stats   -> {"jwks": n, "discovery": n}: requests served so far
//   GET  /_test/keys    -> the current signing keys, private halves included, so that the
//                          test can forge tokens the provider would never issue
//   POST /_test/rotate  -> replaces every signing key with new ones (the old ones vanish from
//                          the JWKS); tokens issued afterwards use the new keys
//   POST /_test/ui-client {"redirect_uri": URL} -> registers `keyward-ui` with that redirect
import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

export const AUDIENCE = 'urn:keyward:api';
const SCOPES = 'keyward:sign keyward:admin keyward:audit';

// Client id -> claims added to its access tokens (roles nested like Keycloak's, and groups).
const CLIENTS = {
  'signer-app': { realm_access: { roles: ['kw-signer'] }, groups: ['payments'], email: 'signer@example.test' },
  'admin-app': { realm_access: { roles: ['kw-admin'] }, groups: [] },
  'other-signer': { realm_access: { roles: ['kw-signer'] }, groups: ['sales'] },
  'scope-app': {},
};

// Account (login name) -> claims added to its access tokens through `keyward-ui`.
const ACCOUNTS = {
  alice: { realm_access: { roles: ['kw-approver', 'treasury'] }, groups: [] },
  bob: { realm_access: { roles: ['kw-approver', 'treasury'] }, groups: [] },
};

let uiRedirect = null;
let generation = 0;

function newKeys() {
  generation += 1;
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const rsaKid = `rsa-${generation}-${crypto.randomBytes(4).toString('hex')}`;
  const ecKid = `ec-${generation}-${crypto.randomBytes(4).toString('hex')}`;
  return {
    jwks: {
      keys: [
        { ...rsa.privateKey.export({ format: 'jwk' }), kid: rsaKid, alg: 'RS256', use: 'sig' },
        { ...ec.privateKey.export({ format: 'jwk' }), kid: ecKid, alg: 'ES256', use: 'sig' },
      ],
    },
    exported: {
      rsa: {
        kid: rsaKid,
        private_pem: rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }),
        public_pem: rsa.publicKey.export({ type: 'spki', format: 'pem' }),
      },
      ec: {
        kid: ecKid,
        private_pem: ec.privateKey.export({ type: 'pkcs8', format: 'pem' }),
      },
    },
  };
}

function makeProvider(issuer, jwks) {
  const provider = new Provider(issuer, {
    clients: [
      ...Object.keys(CLIENTS).map((id) => ({
        client_id: id,
        client_secret: `${id}-secret`,
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_post',
      })),
      ...(uiRedirect
        ? [{
          client_id: 'keyward-ui',
          grant_types: ['authorization_code'],
          response_types: ['code'],
          redirect_uris: [uiRedirect],
          token_endpoint_auth_method: 'none',
        }]
        : []),
    ],
    clientBasedCORS: (ctx, origin, client) => client.clientId === 'keyward-ui' && uiRedirect.startsWith(origin),
    jwks,
    scopes: ['openid', ...SCOPES.split(' ')],
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => AUDIENCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource) => {
          if (resource !== AUDIENCE) {
            throw new Error('unknown resource');
          }
          return {
            scope: SCOPES,
            audience: AUDIENCE,
            accessTokenTTL: 600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    extraTokenClaims: async (ctx, token) =>
      (token.clientId === 'keyward-ui' ? ACCOUNTS[token.accountId] : CLIENTS[token.clientId]) ?? {},
  });
  provider.on('server_error', (ctx, err) => console.error('provider error', err));
  return provider;
}

// Standard output carries only the banner: the test stops reading it after that line, so
// the provider's own notices (the development forms print some) go to standard error.
for (const name of ['log', 'info', 'debug']) console[name] = (...args) => console.error(...args);
process.stdout.on('error', () => {});

const stats = { jwks: 0, discovery: 0 };
let current = null;
let keys = null;

const server = http.createServer((req, res) => {
  const path = new URL(req.url, 'http://x').pathname;
  if (path === '/_test/stats') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(stats));
    return;
  }
  if (path === '/_test/keys') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(keys.exported));
    return;
  }
  if (path === '/_test/rotate' && req.method === 'POST') {
    keys = newKeys();
    current = makeProvider(issuer, keys.jwks);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(keys.exported.rsa.kid));
    return;
  }
  if (path === '/_test/ui-client' && req.method === 'POST') {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      uiRedirect = JSON.parse(body).redirect_uri;
      current = makeProvider(issuer, keys.jwks);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ client_id: 'keyward-ui', redirect_uri: uiRedirect }));
    });
    return;
  }
  if (path === '/jwks') stats.jwks += 1;
  if (path === '/.well-known/openid-configuration') stats.discovery += 1;
  current.callback()(req, res);
});

let issuer = '';
server.listen(0, '127.0.0.1', () => {
  issuer = `http://127.0.0.1:${server.address().port}`;
  keys = newKeys();
  current = makeProvider(issuer, keys.jwks);
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

// Stop with the test: when stdin closes (the parent died), exit.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
