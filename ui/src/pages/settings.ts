/** Settings: the DHCP mode, the UI password, signing out. */
import { useState } from 'preact/hooks';
import { api, type SessionInfo, type Settings } from '../api';
import { ActionButton, Card, confirmAction, h, toast, toastError, usePoll, type El } from '../ui';

const MODES: { mode: 'off' | 'proxy' | 'full'; title: string; text: string }[] = [
  { mode: 'off', title: 'Off', text: 'Another server does all of DHCP and PXE (set its next-server / boot file yourself).' },
  { mode: 'proxy', title: 'proxyDHCP', text: 'Your router keeps handing out addresses; the appliance only adds the PXE boot answer. Safe on any network.' },
  { mode: 'full', title: 'Full DHCP', text: 'The appliance hands out addresses too. Only on a network with no other DHCP server.' },
];

function DhcpSettings(): El {
  const settings = usePoll(() => api<Settings>('GET', '/api/settings'), [], 5000);
  const [switching, setSwitching] = useState<string | undefined>(undefined);
  const current = settings.data?.dhcp?.mode;
  const canServeFull = settings.data?.dhcp?.canServeFull !== false;
  const iface = typeof settings.data?.dhcp?.interface === 'string' ? settings.data.dhcp.interface : '';
  const set = async (mode: 'off' | 'proxy' | 'full') => {
    if (mode === current || switching) return;
    if (mode === 'full') {
      const ok = await confirmAction({
        title: 'Serve full DHCP?',
        body: h(
          'p',
          null,
          'Two DHCP servers on one network hand out conflicting addresses. The appliance listens for another server first and refuses to start if it hears one, but make sure your router’s DHCP is off.',
        ),
        confirmLabel: 'Use full DHCP',
        danger: true,
      });
      if (!ok) return;
    }
    // Switching is live and can take seconds (full DHCP first listens for another server).
    setSwitching(mode);
    try {
      await api('PATCH', '/api/settings', { dhcp: { mode } });
      toast(`DHCP mode: ${MODES.find((m) => m.mode === mode)?.title ?? mode}`);
    } catch (err) {
      toastError('Could not change the DHCP mode', err);
    } finally {
      setSwitching(undefined);
      settings.reload();
    }
  };
  return h(
    Card,
    { title: 'DHCP' },
    settings.error ? h('p', { class: 'error' }, settings.error) : null,
    h('p', { class: 'sub' }, iface ? `Serving on ${iface}.` : 'Serving on every interface.'),
    h(
      'div',
      { class: 'choices', role: 'radiogroup', 'aria-label': 'DHCP mode', 'aria-busy': switching ? 'true' : undefined },
      MODES.map((m) => {
        const unavailable = m.mode === 'full' && !canServeFull;
        return h(
          'label',
          { key: m.mode, class: `choice${current === m.mode ? ' on' : ''}${unavailable ? ' unavailable' : ''}` },
          h('input', {
            type: 'radio',
            name: 'dhcp-mode',
            value: m.mode,
            checked: current === m.mode,
            disabled: settings.data === undefined || !!switching || unavailable,
            onChange: () => void set(m.mode),
          }),
          h(
            'div',
            null,
            h('strong', null, m.title, switching === m.mode ? h('span', { class: 'spinner inline', 'aria-label': 'switching' }) : null),
            h('p', { class: 'sub' }, m.text),
            unavailable ? h('p', { class: 'sub' }, 'Needs an address range: set dhcp.range (and dhcp.interface) in the config file.') : null,
          ),
        );
      }),
    ),
  );
}

function PasswordSettings(props: { session: SessionInfo; saved: () => void }): El {
  const [pw, setPw] = useState('');
  const [pw2, setPw2] = useState('');
  const [current, setCurrent] = useState('');
  const needCurrent = props.session.passwordSet && props.session.method === 'password';
  const problem = pw && pw.length < 10 ? 'At least 10 characters.' : pw2 && pw !== pw2 ? 'The two entries differ.' : undefined;
  return h(
    Card,
    { title: props.session.passwordSet ? 'Change the password' : 'Set a password' },
    h(
      'p',
      { class: 'sub' },
      props.session.passwordSet
        ? 'Signing in works with the password or the admin token. Changing it signs out other password sessions.'
        : 'So you need not paste the admin token each time. The token keeps working.',
    ),
    h(
      'form',
      { class: 'stack narrow', onSubmit: (e: Event) => e.preventDefault() },
      needCurrent
        ? [
            h('label', { for: 'pw-current' }, 'Current password'),
            h('input', {
              id: 'pw-current',
              type: 'password',
              autocomplete: 'current-password',
              value: current,
              onInput: (e: Event) => setCurrent((e.target as HTMLInputElement).value),
            }),
          ]
        : null,
      h('label', { for: 'pw-new' }, 'New password'),
      h('input', {
        id: 'pw-new',
        type: 'password',
        autocomplete: 'new-password',
        value: pw,
        onInput: (e: Event) => setPw((e.target as HTMLInputElement).value),
      }),
      h('label', { for: 'pw-again' }, 'Again'),
      h('input', {
        id: 'pw-again',
        type: 'password',
        autocomplete: 'new-password',
        value: pw2,
        onInput: (e: Event) => setPw2((e.target as HTMLInputElement).value),
      }),
      problem ? h('p', { class: 'hint bad-text' }, problem) : null,
      h(
        ActionButton,
        {
          class: 'primary',
          type: 'submit',
          disabled: !pw || pw !== pw2 || !!problem || (needCurrent && !current),
          onClick: async () => {
            try {
              await api('POST', '/api/password', needCurrent ? { password: pw, currentPassword: current } : { password: pw });
              setPw('');
              setPw2('');
              setCurrent('');
              toast('Password saved');
              props.saved();
            } catch (err) {
              toastError('Could not set the password', err);
            }
          },
        },
        'Save password',
      ),
    ),
  );
}

export function SettingsPage(props: { session: SessionInfo; onLogout: () => void; refresh: () => void }): El {
  return h(
    'div',
    { class: 'page' },
    h(DhcpSettings, null),
    h(PasswordSettings, { session: props.session, saved: props.refresh }),
    h(
      Card,
      { title: 'Session' },
      h(
        'p',
        { class: 'sub' },
        `Signed in with the ${props.session.method === 'password' ? 'password' : 'admin token'}. Sessions end after 12 hours without activity.`,
      ),
      h(
        ActionButton,
        {
          onClick: async () => {
            if (
              !(await confirmAction({ title: 'Sign out?', body: h('p', null, 'You will need the token or password to come back.'), confirmLabel: 'Sign out' }))
            )
              return;
            props.onLogout();
          },
        },
        'Sign out',
      ),
    ),
  );
}
