/**
 * The browser side of the JSON API (docs/api.md). Requests ride on the HttpOnly session cookie;
 * state-changing ones repeat the session's CSRF token in X-CSRF-Token. A 401 anywhere means the
 * session ended: the app shows the login page again.
 */

import type { BootEventView, ClientView, ImageView, SessionRow, UnknownClientsView, UnknownClientView } from '../../appliance/http/api-types';

/** The API's bodies, defined once on the server (appliance/http/api-types.ts), type-only here. */
export type Client = ClientView;
export type Image = ImageView;
export type UnknownClient = UnknownClientView;
export type UnknownClients = UnknownClientsView;
export type BootEvent = BootEventView;
export type IscsiSession = SessionRow;

/** GET /api/session. */
export interface SessionInfo {
  authenticated: boolean;
  method?: 'token' | 'password';
  csrfToken?: string;
  expiresAt?: string;
  passwordSet: boolean;
}

export interface Snapshot {
  id: number | string;
  name: string;
  createdAt: string | number;
  usedBytes?: number;
}

export interface ServiceInfo {
  name: string;
  state: string;
  listen: string[];
  detail?: string;
  counters?: Record<string, number>;
}

export interface Status {
  version: string;
  startedAt: string;
  uptimeSeconds: number;
  serverAddress: string;
  services: ServiceInfo[];
  storage?: {
    dataDir: string;
    filesystem?: { totalBytes: number; freeBytes: number; availableBytes: number };
    store?: { capacityBytes: number; usedBytes: number; freeBytes: number };
  };
  /** Degraded after a failed fdatasync, until `appliance check --repair` (image-store/README.md). */
  storeHealth?: { state: 'ok' | 'degraded'; degraded?: { since: string; last: string; failures: number; reason: string; disks: string[] } };
  /** The served interface (issue #14); `warning` when its address is a DHCP lease. */
  network?: {
    interface: string;
    state: 'no-interface' | 'down' | 'no-carrier' | 'no-address' | 'up';
    address: string;
    since: string;
    leased: boolean;
    warning?: string;
  };
}

export interface Settings {
  dhcp?: { mode?: 'off' | 'proxy' | 'full'; interface?: string; canServeFull?: boolean };
  [k: string]: unknown;
}

/** An API error: the server's code and message (or a network failure, code NETWORK). */
export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

let csrfToken = '';
let onUnauthorized: () => void = () => undefined;

/** Called once by the app: the CSRF token to send and what to do when the session ends. */
export function configureApi(opts: { csrf?: string; unauthorized?: () => void }): void {
  if (opts.csrf !== undefined) csrfToken = opts.csrf;
  if (opts.unauthorized) onUnauthorized = opts.unauthorized;
}

async function failure(res: Response): Promise<ApiFailure> {
  let code = `HTTP_${res.status}`;
  let message = res.statusText || `HTTP ${res.status}`;
  try {
    const body = (await res.json()) as { error?: { code?: string; message?: string } };
    if (body.error?.code) code = body.error.code;
    if (body.error?.message) message = body.error.message;
  } catch {
    // Not JSON (a proxy's page): keep the status text.
  }
  return new ApiFailure(res.status, code, message);
}

/** One JSON request. Resolves with the parsed body (undefined for 204). */
export async function api<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = csrfToken;
  let res: Response;
  try {
    res = await fetch(path, { method, headers, credentials: 'same-origin', cache: 'no-store', body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiFailure(0, 'NETWORK', 'the appliance did not answer');
  }
  if (res.status === 401 && path !== '/api/login') onUnauthorized();
  if (!res.ok) throw await failure(res);
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

/** Encodes one path segment (image names, MACs, snapshot ids). */
export const seg = (s: string | number) => encodeURIComponent(String(s));

/**
 * PUT /api/images/:name/upload with upload progress (fetch cannot report request progress).
 * `onProgress` receives bytes sent and total. Returns an abort function with the promise.
 */
export function uploadImage(name: string, file: Blob, onProgress: (sent: number, total: number) => void): { done: Promise<void>; abort: () => void } {
  const xhr = new XMLHttpRequest();
  const done = new Promise<void>((resolve, reject) => {
    xhr.open('PUT', `/api/images/${seg(name)}/upload`);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.setRequestHeader('X-CSRF-Token', csrfToken);
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) return resolve();
      if (xhr.status === 401) onUnauthorized();
      let code = `HTTP_${xhr.status}`;
      let message = xhr.statusText || `HTTP ${xhr.status}`;
      try {
        const body = JSON.parse(xhr.responseText) as { error?: { code?: string; message?: string } };
        code = body.error?.code ?? code;
        message = body.error?.message ?? message;
      } catch {
        // keep the status text
      }
      reject(new ApiFailure(xhr.status, code, message));
    };
    xhr.onerror = () => reject(new ApiFailure(0, 'NETWORK', 'the upload was interrupted'));
    xhr.onabort = () => reject(new ApiFailure(0, 'ABORTED', 'upload cancelled'));
    xhr.send(file);
  });
  return { done, abort: () => xhr.abort() };
}
