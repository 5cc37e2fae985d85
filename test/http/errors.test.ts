import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { installErrorHandler } from '../../appliance/http/errors';
import { ApiError } from '../../appliance/core/errors';
import { StoreError, type StoreErrorCode } from '../../image-store/errors';

/**
 * The store knows nothing of HTTP: the error handler gives each StoreError its status, ApiErrors
 * keep theirs, and anything else is a 500 whose text (a path, a stack) never reaches the client.
 */
async function answer(err: Error): Promise<{ status: number; body: { error: { code: string; message: string } } }> {
  const app = Fastify({ logger: false });
  installErrorHandler(app);
  app.get('/x', async () => {
    throw err;
  });
  const r = await app.inject({ method: 'GET', url: '/x' });
  await app.close();
  return { status: r.statusCode, body: r.json() };
}

describe('API error answers', () => {
  it.each<[StoreErrorCode, number]>([
    ['DISK_NOT_FOUND', 404],
    ['DISK_IN_USE', 409],
    ['BAD_NAME', 400],
    ['BAD_IMAGE', 422],
    ['IMAGE_REFERENCES_FILE', 400],
    ['NO_SPACE', 507],
    ['STORE_CLOSED', 503],
  ])('StoreError %s is HTTP %i with its code and message', async (code, status) => {
    const r = await answer(new StoreError(code, `words for ${code}`));
    expect(r.status).toBe(status);
    expect(r.body.error).toEqual({ code, message: `words for ${code}` });
  });

  it('an ApiError keeps its status and code', async () => {
    const r = await answer(new ApiError('CLIENT_EXISTS', 409, 'exists'));
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe('CLIENT_EXISTS');
  });

  it('any other error is a 500 that hides its text', async () => {
    const r = await answer(new Error('ENOENT: /var/lib/netboot/secret.key'));
    expect(r.status).toBe(500);
    expect(JSON.stringify(r.body)).not.toContain('/var/lib');
  });
});
