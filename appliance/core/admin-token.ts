import { randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { writeFileDurable } from './durable-file';

/** Where the admin token lives: `<dataDir>/admin.token`, mode 0600. */
export function adminTokenPath(dataDir: string): string {
  return join(dataDir, 'admin.token');
}

/**
 * Reads the admin token, creating it (32 random bytes, hex) on first start. An existing file is
 * tightened to 0600; a new one is written durably, so the token the CLI and the admin were
 * shown is the one still there after a power cut.
 */
export function ensureAdminToken(dataDir: string): string {
  const file = adminTokenPath(dataDir);
  if (existsSync(file)) {
    const token = readFileSync(file, 'utf8').trim();
    if (token.length >= 32) {
      chmodSync(file, 0o600);
      return token;
    }
  }
  mkdirSync(dirname(file), { recursive: true, mode: 0o750 });
  const token = randomBytes(32).toString('hex');
  writeFileDurable(file, token + '\n', 0o600);
  return token;
}

/** Reads an existing token (the CLI); undefined when the service never ran with this dataDir. */
export function readAdminToken(dataDir: string): string | undefined {
  try {
    return readFileSync(adminTokenPath(dataDir), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Constant-time comparison of a presented token with the expected one. */
export function tokenMatches(presented: string | undefined, expected: string): boolean {
  if (!presented) return false;
  const a = Buffer.from(presented);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
