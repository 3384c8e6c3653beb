// A strict OAuth 2.0 authorization server for tokenwarden's tests: oidc-provider (panva, OpenID
// Certified) with
// - the authorization-code grant, PKCE S256 required;
// - refresh tokens that rotate: each refresh consumes the old one, and reusing a consumed one is
//   refused and revokes the whole grant (oidc-provider's default revokeGrantPolicy);
// - short-lived access tokens (PEER_AT_TTL seconds, default 4), so tests cross real expiries;
// - RFC 7009 revocation and RFC 7662 introspection;
// - login and consent approved at once for a test account;
// - clients from PEER_CLIENTS (JSON), each held to the one client authentication method it
//   registered (oidc-provider alone accepts Basic for a client_secret_post client and vice versa).
//
// It listens on 127.0.0.1, port 0, and prints one JSON line {"issuer", "port"} on stdout. It exits
// when its stdin closes, so it never outlives the test that started it.
// GET /_peer/stats counts token-endpoint outcomes by grant type, revocations and introspections.

import http from 'node:http';
import * as querystring from 'node:querystring';
import Provider from 'oidc-provider';

const ttl = Number.parseInt(process.env.PEER_AT_TTL ?? '4', 10);
if (!Number.isInteger(ttl) || ttl < 1) {
  console.error('PEER_AT_TTL must be a whole number of seconds, at least 1');
  process.exit(2);
}
let clients;
try {
  clients = JSON.parse(process.env.PEER_CLIENTS ?? '[]');
} catch (e) {
  console.error(`PEER_CLIENTS is not JSON: ${e.message}`);
  process.exit(2);
}
if (!Array.isArray(clients) || clients.length === 0) {
  console.error('PEER_CLIENTS must be a JSON array of clients');
  process.exit(2);
}

const stats = {
  token: {}, // grant_type -> { ok, errors: { error_code: n } }
  revocation: { ok: 0, error: 0 },
  introspection: { ok: 0, active: 0, inactive: 0, error: 0 },
  wrong_auth_method: 0,
};
function countToken(grantType, error) {
  const s = (stats.token[grantType] ??= { ok: 0, errors: {} });
  if (error) s.errors[error] = (s.errors[error] ?? 0) + 1;
  else s.ok += 1;
}

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: clients.map((c) => ({
      client_id: c.client_id,
      client_secret: c.client_secret,
      redirect_uris: c.redirect_uris,
      token_endpoint_auth_method: c.token_endpoint_auth_method,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
    })),
    scopes: ['openid', 'offline_access', 'ads.read', 'ads.write'],
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      introspection: { enabled: true },
      revocation: { enabled: true },
    },
    ttl: {
      AccessToken: ttl,
      AuthorizationCode: 60,
      RefreshToken: 86400,
      Grant: 86400,
      Session: 86400,
      Interaction: 600,
    },
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: () => true,
    cookies: { keys: ['tokenwarden-test-peer-only'] },
    findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  });

  const registered = new Map(clients.map((c) => [c.client_id, c.token_endpoint_auth_method]));
  const authenticated = new Set(['/token', '/token/introspection', '/token/revocation']);

  provider.use(async (ctx, next) => {
    if (ctx.path === '/_peer/stats' && ctx.method === 'GET') {
      ctx.body = stats;
      return;
    }
    // Hold each client to the method it registered: Basic for client_secret_basic, the form body
    // for client_secret_post. The body is read here (and handed on parsed) to see which was used.
    if (authenticated.has(ctx.path) && ctx.method === 'POST' && ctx.is('application/x-www-form-urlencoded')) {
      const chunks = [];
      for await (const chunk of ctx.req) chunks.push(chunk);
      const body = querystring.parse(Buffer.concat(chunks).toString('utf8'));
      ctx.request.body = body;
      const auth = ctx.get('authorization');
      let used;
      let clientId;
      if (/^basic /i.test(auth)) {
        used = 'client_secret_basic';
        const raw = Buffer.from(auth.slice(6).trim(), 'base64').toString('utf8');
        try {
          clientId = decodeURIComponent(raw.slice(0, raw.indexOf(':')).replace(/\+/g, '%20'));
        } catch {
          clientId = undefined;
        }
      } else {
        used = body.client_secret !== undefined ? 'client_secret_post' : 'none';
        clientId = body.client_id;
      }
      const method = registered.get(clientId);
      if (method && method !== used) {
        stats.wrong_auth_method += 1;
        ctx.status = 401;
        ctx.body = { error: 'invalid_client', error_description: `this client authenticates with ${method}, not ${used}` };
        return;
      }
    }
    if (/^\/interaction\/[^/]+$/.test(ctx.path)) {
      // Approve login and consent at once for the test account.
      const d = await provider.interactionDetails(ctx.req, ctx.res);
      const accountId = d.session?.accountId || 'test-user';
      const grant = d.grantId
        ? await provider.Grant.find(d.grantId)
        : new provider.Grant({ accountId, clientId: d.params.client_id });
      grant.addOIDCScope(d.params.scope);
      const grantId = await grant.save();
      await provider.interactionFinished(
        ctx.req,
        ctx.res,
        { login: { accountId }, consent: { grantId } },
        { mergeWithLastSubmission: false },
      );
      return;
    }
    await next();
    if (ctx.path === '/token' && ctx.method === 'POST') {
      const grantType = ctx.oidc?.params?.grant_type ?? 'unknown';
      countToken(grantType, ctx.status === 200 ? undefined : (ctx.body?.error ?? `http_${ctx.status}`));
    } else if (ctx.path === '/token/revocation' && ctx.method === 'POST') {
      stats.revocation[ctx.status === 200 ? 'ok' : 'error'] += 1;
    } else if (ctx.path === '/token/introspection' && ctx.method === 'POST') {
      if (ctx.status === 200) {
        stats.introspection.ok += 1;
        stats.introspection[ctx.body?.active ? 'active' : 'inactive'] += 1;
      } else {
        stats.introspection.error += 1;
      }
    }
  });

  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
});

// Whoever started the peer may stop reading its output; that must not crash it.
process.stdout.on('error', () => {});
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
