import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';

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

/** Writes the overrides atomically (write + rename), so a power cut leaves the old or the new file. */
export function writeRuntimeSettings(dataDir: string, s: RuntimeSettings): void {
  const tmp = file(dataDir) + '.tmp';
  writeFileSync(tmp, JSON.stringify(s, null, 2) + '\n', { mode: 0o600 });
  renameSync(tmp, file(dataDir));
}
