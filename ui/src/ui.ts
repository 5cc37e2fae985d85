/**
 * Shared building blocks: polling, the confirmation dialog, toasts, progress bars. Written with
 * preact's h() (no JSX, so the repo's tsconfig typechecks it as plain TypeScript).
 */
import { h, type ComponentChildren, type VNode } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ApiFailure } from './api';

export { h };

/** What a component returns (preact's VNode is invariant in its props, so widen it once here). */
// biome-ignore lint/suspicious/noExplicitAny: preact's VNode is invariant in its props; one wide type for every component
export type El = VNode<any>;

/** Poll period: fresh enough to watch a boot, light enough for a phone on Wi-Fi. */
export const POLL_MS = 2500;

export interface Polled<T> {
  data: T | undefined;
  error: string | undefined;
  /** Fetch now (after an action) instead of waiting for the next tick. */
  reload: () => void;
}

/**
 * Calls `load` now and every POLL_MS while the page is visible; a hidden tab stops polling and
 * refreshes as soon as it is shown again. Results of a stale call (after unmount or a newer
 * call) are dropped.
 */
export function usePoll<T>(load: () => Promise<T>, deps: unknown[] = [], ms = POLL_MS): Polled<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const gen = useRef(0);
  const timer = useRef<number | undefined>(undefined);
  const loadRef = useRef(load);
  loadRef.current = load;

  const tick = useCallback(async () => {
    const mine = ++gen.current;
    window.clearTimeout(timer.current);
    try {
      const value = await loadRef.current();
      if (mine !== gen.current) return;
      setData(value);
      setError(undefined);
    } catch (err) {
      if (mine !== gen.current) return;
      setError(err instanceof Error ? err.message : String(err));
    }
    if (mine === gen.current && !document.hidden) timer.current = window.setTimeout(() => void tick(), ms);
  }, [ms]);

  useEffect(() => {
    setData(undefined);
    void tick();
    const onVisible = () => {
      if (!document.hidden) void tick();
    };
    document.addEventListener('visibilitychange', onVisible);
    return () => {
      gen.current++;
      window.clearTimeout(timer.current);
      document.removeEventListener('visibilitychange', onVisible);
    };
  }, deps);

  return { data, error, reload: () => void tick() };
}

// ---- confirmation dialog -------------------------------------------------------------------

export interface ConfirmRequest {
  title: string;
  body: ComponentChildren;
  confirmLabel: string;
  danger?: boolean;
}

type ConfirmState = ConfirmRequest & { resolve: (ok: boolean) => void };
let showConfirm: (c: ConfirmState | undefined) => void = () => undefined;

/** Asks before a destructive action; resolves true when the user confirms. */
export function confirmAction(req: ConfirmRequest): Promise<boolean> {
  return new Promise((resolve) => showConfirm({ ...req, resolve }));
}

/** The one dialog host, mounted once by the app. Escape cancels; focus starts on Cancel. */
export function ConfirmHost(): El | null {
  const [req, setReq] = useState<ConfirmState | undefined>(undefined);
  const cancelRef = useRef<HTMLButtonElement>(null);
  const dialogRef = useRef<HTMLDivElement>(null);
  showConfirm = setReq;
  useEffect(() => {
    if (!req) return;
    // A prompt starts in its field; a plain confirmation on Cancel (Enter must not destroy).
    (dialogRef.current?.querySelector('input') ?? cancelRef.current)?.focus();
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape') close(false);
      if (e.key === 'Enter' && (e.target as HTMLElement).tagName === 'INPUT') close(true);
      // Keep Tab inside the dialog (it is modal: the page behind must not take focus).
      if (e.key === 'Tab' && dialogRef.current) {
        const items = [...dialogRef.current.querySelectorAll<HTMLElement>('button, input, select, a[href]')].filter((x) => !x.hasAttribute('disabled'));
        if (!items.length) return;
        const first = items[0];
        const last = items[items.length - 1];
        if (e.shiftKey && document.activeElement === first) {
          e.preventDefault();
          last.focus();
        } else if (!e.shiftKey && document.activeElement === last) {
          e.preventDefault();
          first.focus();
        }
      }
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, [req]);
  if (!req) return null;
  const close = (ok: boolean) => {
    setReq(undefined);
    req.resolve(ok);
  };
  return h(
    'div',
    { class: 'overlay', onClick: (e: MouseEvent) => e.target === e.currentTarget && close(false) },
    h(
      'div',
      { class: 'dialog', ref: dialogRef, role: 'alertdialog', 'aria-modal': 'true', 'aria-labelledby': 'dlg-title' },
      h('h2', { id: 'dlg-title' }, req.title),
      h('div', { class: 'dialog-body' }, req.body),
      h(
        'div',
        { class: 'dialog-actions' },
        h('button', { class: 'btn', ref: cancelRef, onClick: () => close(false) }, 'Cancel'),
        h('button', { class: req.danger ? 'btn danger' : 'btn primary', onClick: () => close(true) }, req.confirmLabel),
      ),
    ),
  );
}

/**
 * Asks for one line of text (e.g. the name of a new image) in the same dialog; resolves the
 * trimmed text, or undefined when cancelled or empty.
 */
export async function promptAction(req: { title: string; label: string; initial?: string; hint?: string; confirmLabel: string }): Promise<string | undefined> {
  let value = req.initial ?? '';
  const ok = await confirmAction({
    title: req.title,
    confirmLabel: req.confirmLabel,
    body: h(
      'div',
      { class: 'stack' },
      h('label', { for: 'prompt-input' }, req.label),
      h('input', { id: 'prompt-input', value, onInput: (e: Event) => (value = (e.target as HTMLInputElement).value) }),
      req.hint ? h('p', { class: 'hint' }, req.hint) : null,
    ),
  });
  return ok && value.trim() ? value.trim() : undefined;
}

// ---- toasts --------------------------------------------------------------------------------

interface Toast {
  id: number;
  text: string;
  kind: 'ok' | 'error';
}
let pushToast: (t: Toast) => void = () => undefined;
let toastSeq = 0;

/** Shows a short message at the bottom of the screen. */
export function toast(text: string, kind: 'ok' | 'error' = 'ok'): void {
  pushToast({ id: ++toastSeq, text, kind });
}

/** Reports a failed action in a toast, with the server's message. */
export function toastError(what: string, err: unknown): void {
  const msg = err instanceof ApiFailure ? err.message : err instanceof Error ? err.message : String(err);
  toast(`${what}: ${msg}`, 'error');
}

/** The toast host, mounted once by the app. */
export function ToastHost(): El {
  const [items, setItems] = useState<Toast[]>([]);
  pushToast = (t) => {
    setItems((xs) => [...xs.slice(-1), t]);
    window.setTimeout(() => setItems((xs) => xs.filter((x) => x.id !== t.id)), t.kind === 'error' ? 8000 : 3000);
  };
  return h(
    'div',
    { class: 'toasts', role: 'status', 'aria-live': 'polite' },
    items.map((t) => h('div', { key: t.id, class: `toast ${t.kind}` }, t.text)),
  );
}

// ---- small pieces --------------------------------------------------------------------------

/** A determinate bar (value 0..1) or an indeterminate one (undefined). */
export function Progress(props: { value?: number; label?: string }): El {
  const pct = props.value === undefined ? undefined : Math.round(props.value * 100);
  return h(
    'div',
    {
      class: pct === undefined ? 'progress indeterminate' : 'progress',
      role: 'progressbar',
      'aria-valuemin': 0,
      'aria-valuemax': 100,
      'aria-valuenow': pct,
      'aria-label': props.label ?? 'progress',
    },
    h('div', { class: 'progress-fill', style: pct === undefined ? undefined : { width: `${pct}%` } }),
  );
}

/** A usage meter: used / total with a coloured bar that warns above 85 % and alarms above 95 %. */
export function Meter(props: { used: number; total: number }): El {
  const f = props.total > 0 ? Math.min(1, props.used / props.total) : 0;
  return h(
    'div',
    { class: `meter${f > 0.95 ? ' alarm' : f > 0.85 ? ' warn' : ''}` },
    h('div', { class: 'meter-fill', style: { width: `${Math.round(f * 100)}%` } }),
  );
}

/** A coloured status dot with its word. */
export function Dot(props: { state: 'ok' | 'off' | 'warn' | 'bad'; text: string }): El {
  return h('span', { class: `dot ${props.state}` }, props.text);
}

/** A titled card. */
export function Card(props: { title?: ComponentChildren; actions?: ComponentChildren; class?: string; children?: ComponentChildren }): El {
  return h(
    'section',
    { class: `card ${props.class ?? ''}` },
    props.title || props.actions
      ? h('header', { class: 'card-head' }, h('h2', null, props.title), props.actions ? h('div', { class: 'card-actions' }, props.actions) : null)
      : null,
    props.children,
  );
}

/** What a list shows when it has nothing in it. */
export const Empty = (props: { children?: ComponentChildren }) => h('p', { class: 'empty' }, props.children);

/**
 * A button that runs an async action, disables itself and shows a spinner meanwhile (so a slow
 * snapshot or restore is visibly in progress and cannot be clicked twice).
 */
export function ActionButton(props: {
  onClick: () => Promise<unknown>;
  class?: string;
  children?: ComponentChildren;
  disabled?: boolean;
  title?: string;
  type?: 'button' | 'submit';
}): El {
  const [busy, setBusy] = useState(false);
  const mounted = useRef(true);
  useEffect(() => () => void (mounted.current = false), []);
  return h(
    'button',
    {
      type: props.type ?? 'button',
      class: `btn ${props.class ?? ''}${busy ? ' busy' : ''}`,
      disabled: props.disabled || busy,
      title: props.title,
      'aria-busy': busy ? 'true' : undefined,
      onClick: async (e: Event) => {
        e.preventDefault();
        setBusy(true);
        try {
          await props.onClick();
        } finally {
          if (mounted.current) setBusy(false);
        }
      },
    },
    busy ? h('span', { class: 'spinner', 'aria-hidden': 'true' }) : null,
    props.children,
  );
}

/** The column titles above a list of rows (wide screens only; phones label each cell). */
export const HeadRow = (props: { class: string; cols: string[] }) =>
  h(
    'div',
    { class: `row head ${props.class}`, 'aria-hidden': 'true' },
    props.cols.map((c, i) => h('div', { key: i, class: 'cell' }, c)),
  );

/** Navigates inside the app (hash routes keep the server to a single page). */
export const link = (path: string) => `#${path}`;
