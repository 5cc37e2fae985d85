import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { liveApp, rawRequest, type LiveApp } from './helpers';

// Issue #13 "Lock the doors": each hole an attacker on the LAN found in the shipped bundle,
// reproduced against the real app over a real socket.
describe('issue #13: the API holes found on the LAN', () => {
  let live: LiveApp;
  beforeAll(async () => {
    live = await liveApp();
  });
  afterAll(async () => {
    await live?.close();
  });

  it.each(['/%61pi/clients', '/a%70i/status', '/%61%70%69/status', '/api/%63lients', '/api/status%3F'])('GET %s without a token is refused', async (target) => {
    const r = await rawRequest(live.port, 'GET', target);
    expect([401, 404]).toContain(r.status);
  });

  it('an absolute-form request target without a token is refused', async () => {
    const r = await rawRequest(live.port, 'GET', `http://127.0.0.1:${live.port}/api/clients`);
    expect(r.status).toBe(401);
  });

  it('PATCH /%61pi/settings without a token is refused', async () => {
    const r = await rawRequest(live.port, 'PATCH', '/%61pi/settings', { 'content-type': 'application/json' }, '{"dhcp":{"mode":"off"}}');
    expect(r.status).toBe(401);
  });

  it('POST .../reset?force=true spelled differently without a token is refused', async () => {
    const r = await rawRequest(live.port, 'POST', '/%61pi/clients/52:54:00:00:00:01/reset?force=true', { 'content-type': 'application/json' }, '{}');
    expect(r.status).toBe(401);
  });

  it('a text/plain body (what a cross-site form or no-cors fetch can send) is refused with 415 even with the token', async () => {
    const r = await rawRequest(
      live.port,
      'PATCH',
      '/api/settings',
      { 'content-type': 'text/plain', authorization: `Bearer ${live.appliance.token}` },
      '{"dhcp":{"mode":"off"}}',
    );
    expect(r.status).toBe(415);
    const form = await rawRequest(
      live.port,
      'POST',
      '/api/images',
      { 'content-type': 'application/x-www-form-urlencoded', authorization: `Bearer ${live.appliance.token}` },
      'name=a&path=/etc/passwd',
    );
    expect(form.status).toBe(415);
  });

  it('the same spellings with the token do reach the route (so the refusals above are the auth, not the router)', async () => {
    const r = await rawRequest(live.port, 'GET', '/%61pi/status', { authorization: `Bearer ${live.appliance.token}` });
    expect(r.status).toBe(200);
  });
});
