import { createReadStream, statSync } from 'node:fs';
import { Readable } from 'node:stream';
import type { Config } from '../core/config';
import { readAdminToken, adminTokenPath } from '../core/admin-token';
import { readRuntimeInfo } from '../core/runtime-info';

/** An API error as the CLI shows it. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/**
 * Talks to the running appliance's JSON API, finding its address and admin token from the
 * same config the service uses.
 */
export class ApiClient {
  readonly base: string;
  private readonly token: string;

  constructor(config: Readonly<Config>) {
    const host = config.http.host === '0.0.0.0' || config.http.host === '::' ? '127.0.0.1' : config.http.host;
    // Port 0 means "any free port": the running service records the one it got.
    const port = config.http.port || readRuntimeInfo(config.dataDir)?.httpPort || 0;
    this.base = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
    const token = readAdminToken(config.dataDir);
    if (!token) throw new CliError(`no admin token at ${adminTokenPath(config.dataDir)}: has the appliance been started with this config?`);
    this.token = token;
  }

  /** Sends a request; returns the parsed JSON body, or throws CliError with the API's message. */
  async call<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    return this.send<T>(path, {
      method,
      headers: { authorization: `Bearer ${this.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
  }

  /** PUTs the file `file` as an application/octet-stream body, streamed (images are large). */
  async upload<T = unknown>(path: string, file: string): Promise<T> {
    const size = statSync(file).size;
    return this.send<T>(path, {
      method: 'PUT',
      headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/octet-stream', 'content-length': String(size) },
      body: Readable.toWeb(createReadStream(file)) as ReadableStream,
      duplex: 'half',
    } as RequestInit);
  }

  private async send<T>(path: string, init: RequestInit): Promise<T> {
    let res: Response;
    try {
      res = await fetch(this.base + path, init);
    } catch (err) {
      throw new CliError(
        `cannot reach the appliance at ${this.base} (${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}): is it running?`,
      );
    }
    const text = await res.text();
    const json = text ? JSON.parse(text) : undefined;
    if (!res.ok) {
      const e = json?.error;
      throw new CliError(e ? `${e.code}: ${e.message}` : `HTTP ${res.status}`);
    }
    return json as T;
  }
}
