/**
 * The web UI: a single page with hash routes (#/, #/clients/<mac>, #/images, #/storage,
 * #/settings). It polls the API every few seconds instead of reloading, and keeps no secret in
 * script-readable storage: the session lives in an HttpOnly cookie, the CSRF token in memory.
 */
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, configureApi, type SessionInfo, type Status } from './api';
import { ClientPage } from './pages/client';
import { DashboardPage } from './pages/dashboard';
import { ImagesPage } from './pages/images';
import { LoginPage } from './pages/login';
import { SettingsPage } from './pages/settings';
import { StoragePage } from './pages/storage';
import { ConfirmHost, ToastHost, h, link, usePoll, type El } from './ui';

type Route = { page: 'dashboard' } | { page: 'client'; mac: string } | { page: 'images' } | { page: 'storage' } | { page: 'settings' };

function parseRoute(hash: string): Route {
  const path = hash.replace(/^#/, '') || '/';
  const m = /^\/clients\/([^/]+)$/.exec(path);
  if (m) return { page: 'client', mac: decodeURIComponent(m[1]) };
  if (path === '/images') return { page: 'images' };
  if (path === '/storage') return { page: 'storage' };
  if (path === '/settings') return { page: 'settings' };
  return { page: 'dashboard' };
}

function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const on = () => {
      setRoute(parseRoute(location.hash));
      window.scrollTo(0, 0);
    };
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return route;
}

const NAV: { page: Route['page']; path: string; label: string }[] = [
  { page: 'dashboard', path: '/', label: 'Clients' },
  { page: 'images', path: '/images', label: 'Images' },
  { page: 'storage', path: '/storage', label: 'Storage' },
  { page: 'settings', path: '/settings', label: 'Settings' },
];

function Shell(props: { session: SessionInfo; onLogout: () => void; refresh: () => void }): El {
  const route = useRoute();
  const status = usePoll(() => api<Status>('GET', '/api/status'));
  const active = route.page === 'client' ? 'dashboard' : route.page;
  const failed = status.data?.services.filter((s) => s.state === 'failed') ?? [];
  // First run: the token works, but a password is friendlier on a phone. Offer it once.
  const [tipHidden, setTipHidden] = useState(() => localStorage.getItem('nb-password-tip') === 'hidden');
  const showTip = !props.session.passwordSet && props.session.method === 'token' && !tipHidden && route.page !== 'settings';
  return h(
    'div',
    { class: 'shell' },
    h(
      'header',
      { class: 'topbar' },
      h('a', { class: 'brand', href: link('/') }, h('span', { class: 'logo', 'aria-hidden': 'true' }), 'netboot'),
      h(
        'nav',
        null,
        NAV.map((n) =>
          h(
            'a',
            { key: n.page, href: link(n.path), class: active === n.page ? 'on' : undefined, 'aria-current': active === n.page ? 'page' : undefined },
            n.label,
          ),
        ),
      ),
      h('span', { class: `conn ${status.error ? 'down' : 'up'}`, title: status.error ?? 'connected' }, status.error ? 'offline' : ''),
    ),
    status.error ? h('div', { class: 'banner bad' }, `Cannot reach the appliance (${status.error}). Retrying…`) : null,
    showTip
      ? h(
          'div',
          { class: 'banner info' },
          h('span', null, 'Signed in with the admin token. ', h('a', { href: link('/settings') }, 'Set a password'), ' to sign in more easily next time.'),
          h(
            'button',
            {
              class: 'linkish',
              onClick: () => {
                localStorage.setItem('nb-password-tip', 'hidden');
                setTipHidden(true);
              },
            },
            'Dismiss',
          ),
        )
      : null,
    failed.length ? h('div', { class: 'banner bad' }, `Failed: ${failed.map((s) => `${s.name}${s.detail ? ` (${s.detail})` : ''}`).join(', ')}`) : null,
    h(
      'main',
      null,
      route.page === 'dashboard'
        ? h(DashboardPage, { status: status.data })
        : route.page === 'client'
          ? h(ClientPage, { key: route.mac, mac: route.mac })
          : route.page === 'images'
            ? h(ImagesPage, null)
            : route.page === 'storage'
              ? h(StoragePage, { status: status.data })
              : h(SettingsPage, { session: props.session, onLogout: props.onLogout, refresh: props.refresh }),
    ),
  );
}

function App(): El {
  const [session, setSession] = useState<SessionInfo | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const [signingOut, setSigningOut] = useState(false);

  const check = async () => {
    try {
      const s = await api<SessionInfo>('GET', '/api/session');
      configureApi({ csrf: s.csrfToken ?? '' });
      setSession(s);
      setError(undefined);
    } catch (err) {
      setError((err as Error).message);
    }
  };
  useEffect(() => {
    // The session ended (expired, signed out elsewhere, appliance restarted): ask again what login offers.
    configureApi({ unauthorized: () => void check() });
    void check();
  }, []);

  let body: El;
  if (!session) body = h('main', { class: 'login' }, h('p', { class: 'muted' }, error ? `Cannot reach the appliance: ${error}` : 'Loading…'));
  else if (signingOut) body = h('main', { class: 'login' }, h('p', { class: 'muted' }, 'Signing out…'));
  else if (!session.authenticated) {
    body = h(LoginPage, {
      key: String(session.passwordSet),
      passwordSet: session.passwordSet,
      onLogin: (s) => {
        configureApi({ csrf: s.csrfToken ?? '' });
        setSession(s);
      },
    });
  } else {
    body = h(Shell, {
      session,
      // The signed-in pages go first, so none of their polls can reach the API with the old
      // cookie (a 401 after sign-out); the login page follows once the session is known.
      onLogout: () => {
        setSigningOut(true);
        void (async () => {
          try {
            await api('POST', '/api/logout');
          } catch {
            // Already signed out (expired): the login page is where we go anyway.
          }
          configureApi({ csrf: '' });
          await check();
          setSigningOut(false);
        })();
      },
      refresh: () => void check(),
    });
  }
  return h('div', null, body, h(ConfirmHost, null), h(ToastHost, null));
}

render(h(App, null), document.getElementById('app')!);
