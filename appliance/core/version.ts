declare const __VERSION__: string | undefined;

/** The appliance's version: stamped into the bundle by esbuild, read from package.json in development. */
export function applianceVersion(): string {
  if (typeof __VERSION__ !== 'undefined' && __VERSION__) return __VERSION__;
  try {
    return (require('../../package.json') as { version: string }).version + '-dev';
  } catch {
    return 'dev';
  }
}
