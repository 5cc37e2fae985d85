/** The login page: the admin token, or the password once one is set. */
import { useState } from 'preact/hooks';
import { api, ApiFailure, type SessionInfo } from '../api';
import { h, type El } from '../ui';

export function LoginPage(props: { passwordSet: boolean; onLogin: (s: SessionInfo) => void }): El {
  const [mode, setMode] = useState<'password' | 'token'>(props.passwordSet ? 'password' : 'token');
  const [value, setValue] = useState('');
  const [error, setError] = useState<string | undefined>(undefined);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    if (!value) return;
    setBusy(true);
    setError(undefined);
    try {
      const s = await api<SessionInfo>('POST', '/api/login', mode === 'token' ? { token: value.trim() } : { password: value });
      setValue('');
      props.onLogin(s);
    } catch (err) {
      const f = err instanceof ApiFailure ? err : undefined;
      setError(
        f?.status === 429
          ? 'Too many failed attempts. Wait a minute and try again.'
          : f?.status === 401
            ? mode === 'token'
              ? 'That token is not right.'
              : 'That password is not right.'
            : (err as Error).message,
      );
    } finally {
      setBusy(false);
    }
  };

  return h(
    'main',
    { class: 'login' },
    h(
      'form',
      { class: 'card login-card', onSubmit: submit },
      h('div', { class: 'brand big' }, h('span', { class: 'logo', 'aria-hidden': 'true' }), 'netboot'),
      h('p', { class: 'muted' }, 'Diskless PCs, booting their own disks over the network.'),
      h('label', { for: 'login-secret' }, mode === 'token' ? 'Admin token' : 'Password'),
      h('input', {
        id: 'login-secret',
        name: mode,
        type: 'password',
        autocomplete: mode === 'token' ? 'off' : 'current-password',
        autofocus: true,
        value,
        onInput: (e: Event) => setValue((e.target as HTMLInputElement).value),
      }),
      mode === 'token' ? h('p', { class: 'hint' }, 'It is in ', h('code', null, '<dataDir>/admin.token'), ' on the appliance (sudo cat it).') : null,
      error ? h('p', { class: 'error', role: 'alert' }, error) : null,
      h('button', { class: 'btn primary wide', type: 'submit', disabled: busy || !value }, busy ? 'Signing in…' : 'Sign in'),
      props.passwordSet
        ? h(
            'button',
            {
              type: 'button',
              class: 'linkish',
              onClick: () => {
                setMode(mode === 'token' ? 'password' : 'token');
                setError(undefined);
                setValue('');
              },
            },
            mode === 'token' ? 'Use the password instead' : 'Use the admin token instead',
          )
        : h('p', { class: 'hint' }, 'After signing in you can set a password under Settings.'),
    ),
  );
}
