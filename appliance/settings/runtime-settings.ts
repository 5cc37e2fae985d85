import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { writeFileDurable } from '../core/durable-file';

/**
 * Settings changed from the UI at run time, kept in `<dataDir>/settings.json` and laid over the
 * config file's values at start. Only what is safe to change live is here.
 */
export const runtimeSettingsSchema = z.strictObject({
  dhcp: z.strictObject({ mode: z.enum(['off', 'proxy', 'full']).optional() }).optional(),
});
export type RuntimeSettings = z.infer<typeof runtimeSettingsSchema>;

const file = (dataDir: string) => join(dataDir, 'settings.json');

/** Reads the overrides; a missing or unreadable file means none (the config file rules). */
export function readRuntimeSettings(dataDir: string): RuntimeSettings {
  try {
    return runtimeSettingsSchema.parse(JSON.parse(readFileSync(file(dataDir), 'utf8')));
  } catch {
    return {};
  }
}

/**
 * Writes the overrides durably (core/durable-file.ts), mode 0600: after a power cut the file is
 * the old or the new one, and once the API has answered, the new one.
 */
export function writeRuntimeSettings(dataDir: string, s: RuntimeSettings): void {
  writeFileDurable(file(dataDir), JSON.stringify(s, null, 2) + '\n', 0o600);
}
