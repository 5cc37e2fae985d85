import { describe, expect, it, vi } from 'vitest';
import { archFamily } from '../../appliance/boot/arch';
import { findIpxeBinaries, missingBinaries } from '../../appliance/boot/binaries';
import { bootBinaryPath, bootScriptFor, type BootScriptContext } from '../../appliance/boot/http';
import { renderIpxeScript, renderMenuScript } from '../../appliance/boot/ipxe-script';
import { decideBoot, iscsiRootPath, type BootPolicyContext, type BootFacts } from '../../appliance/boot/policy';
import type { BootEvent, ClientRecord } from '../../appliance/core/model';

const mac = '52:54:00:12:34:56';
const client: ClientRecord = {
  mac,
  name: 'pc-1',
  image: 'debian',
  disk: 'pc-1',
  target: 'iqn.2026-11.local.netboot:pc-1',
  lun: 0,
  initiatorName: 'iqn.2026-11.local.netboot:initiator:pc-1',
  initiators: [],
  chap: null,
  ip: null,
  createdAt: 0,
};
const allBinaries = { dir: '/usr/lib/ipxe', bios: 'undionly.kpxe', efiX64: 'ipxe.efi', efiArm64: 'ipxe-arm64.efi' };

function ctx(extra: Partial<BootPolicyContext> = {}): BootPolicyContext {
  return {
    clients: { byMac: (m) => (m === mac ? client : undefined) },
    serverAddress: '198.18.0.1',
    httpPort: 8080,
    iscsiPort: 3260,
    unknownClients: 'ignore',
    binaries: allBinaries,
    ...extra,
  };
}
const firmware = (arch: number | undefined, vc = `PXEClient:Arch:${String(arch ?? 0).padStart(5, '0')}:UNDI:002001`): BootFacts => ({
  mac,
  arch,
  vendorClass: vc,
  userClass: undefined,
  ipxe: undefined,
});

describe('the one RFC 4173 root path', () => {
  it('writes the port always and the LUN in hexadecimal (RFC 4173 §5, iPXE scsi_parse_lun)', () => {
    expect(iscsiRootPath(client, '198.18.0.1', 3260)).toBe(`iscsi:198.18.0.1::3260:0:${client.target}`);
    expect(iscsiRootPath({ ...client, lun: 10 }, '10.0.0.2', 3261)).toBe(`iscsi:10.0.0.2::3261:a:${client.target}`);
    // The iPXE script sanboots exactly what DHCP's option 17 carries.
    expect(renderIpxeScript(client, { serverAddress: '198.18.0.1', iscsiPort: 3260 })).toContain(`sanboot ${iscsiRootPath(client, '198.18.0.1', 3260)} ||`);
  });
});

describe('decideBoot', () => {
  it.each([
    [0, 'undionly.kpxe'],
    [undefined, 'undionly.kpxe'],
    [7, 'ipxe.efi'],
    [9, 'ipxe.efi'],
    [11, 'ipxe-arm64.efi'],
  ])('firmware arch %s chainloads %s over TFTP', (arch, file) => {
    expect(decideBoot(firmware(arch), ctx())).toEqual({ kind: 'chainload', family: archFamily(arch), file });
  });

  it('UEFI HTTP boot (16, 19) gets an http:// URL to the binary', () => {
    expect(decideBoot(firmware(16, 'HTTPClient:Arch:00016:UNDI:003001'), ctx())).toEqual({
      kind: 'http-boot',
      family: 'http-x64',
      url: 'http://198.18.0.1:8080/boot/ipxe.efi',
    });
    expect(decideBoot(firmware(19, 'HTTPClient:Arch:00019:UNDI:003001'), ctx())).toMatchObject({
      kind: 'http-boot',
      url: 'http://198.18.0.1:8080/boot/ipxe-arm64.efi',
    });
  });

  it('reports a missing binary (ARM64 on a Debian install) instead of offering nothing silently', () => {
    const noArm64 = { dir: '/usr/lib/ipxe', bios: 'undionly.kpxe', efiX64: 'ipxe.efi' };
    // An unknown machine (menu mode) is on the iPXE road: the iPXE binary is what is missing.
    const a = decideBoot({ ...firmware(11), mac: '02:00:00:00:00:99' }, ctx({ binaries: noArm64, unknownClients: 'menu' }));
    expect(a).toMatchObject({ kind: 'missing-binary', family: 'efi-arm64' });
    expect((a as { reason: string }).reason).toMatch(/\/usr\/lib\/ipxe/);
    // A client takes the GRUB road on ARM64 (issue #15): without the signed shim + GRUB, that is what is named.
    const b = decideBoot(firmware(11), ctx({ binaries: noArm64 }));
    expect(b).toMatchObject({ kind: 'missing-binary', family: 'efi-arm64' });
    expect((b as { reason: string }).reason).toMatch(/signed shim \+ GRUB/);
  });

  it('an iPXE client is never handed iPXE again (user class or option 175), whatever its arch', () => {
    for (const req of [
      { ...firmware(0), userClass: 'iPXE' },
      { ...firmware(7), ipxe: new Map([[0x13, Buffer.from([1])]]) },
    ]) {
      const a = decideBoot(req, ctx());
      expect(a.kind).toBe('ipxe');
      expect(a).toMatchObject({ url: 'http://198.18.0.1:8080/boot/52-54-00-12-34-56.ipxe', initiatorName: client.initiatorName });
      // No root-path next to a script: iPXE would hook the SAN before running the script (and abort if that fails).
      expect(a).toMatchObject({ rootPath: undefined });
    }
  });

  it('an iPXE without HTTP gets root-path only (sanboot without a script)', () => {
    const a = decideBoot({ ...firmware(0), userClass: 'iPXE', ipxe: new Map([[0x11, Buffer.from([1])]]) }, ctx());
    expect(a).toMatchObject({ kind: 'ipxe', url: undefined, rootPath: iscsiRootPath(client, '198.18.0.1', 3260) });
  });

  it('unknown clients: ignore / menu / enroll', () => {
    const unknown = { ...firmware(0), mac: '02:00:00:00:00:99' };
    expect(decideBoot(unknown, ctx()).kind).toBe('ignore');
    expect(decideBoot(unknown, ctx({ unknownClients: 'menu' })).kind).toBe('chainload');
    expect(decideBoot({ ...unknown, userClass: 'iPXE' }, ctx({ unknownClients: 'enroll' }))).toMatchObject({
      kind: 'ipxe',
      client: undefined,
      url: 'http://198.18.0.1:8080/boot/02-00-00-00-00-99.ipxe',
    });
  });

  it('ignores clients that are not network booting', () => {
    expect(decideBoot({ mac, arch: undefined, vendorClass: 'android-dhcp-13', userClass: undefined, ipxe: undefined }, ctx()).kind).toBe('ignore');
  });
});

describe('binaries', () => {
  it("finds Debian's x86 binaries, prefers snponly.efi when configured, and names what is missing", () => {
    const present = new Set(['/d/undionly.kpxe', '/d/ipxe.efi', '/d/snponly.efi']);
    const b = findIpxeBinaries('/d', 'ipxe.efi', (p) => present.has(p));
    expect(b).toMatchObject({ bios: 'undionly.kpxe', efiX64: 'ipxe.efi', efiArm64: undefined });
    expect(findIpxeBinaries('/d', 'snponly.efi', (p) => present.has(p)).efiX64).toBe('snponly.efi');
    expect(missingBinaries(b).join('\n')).toMatch(/ARM64.*Debian ships x86 only/);
  });

  it('serves only known binaries over HTTP', () => {
    expect(bootBinaryPath('ipxe.efi', allBinaries)).toBe('/usr/lib/ipxe/ipxe.efi');
    expect(bootBinaryPath('../../etc/passwd', allBinaries)).toBeUndefined();
  });
});

describe('iPXE scripts', () => {
  it('sets the initiator name, sanboots the target, and falls back to a menu that waits', () => {
    const s = renderIpxeScript(client, { serverAddress: '198.18.0.1', iscsiPort: 3260 });
    expect(s.startsWith('#!ipxe\n')).toBe(true);
    expect(s).toContain('set initiator-iqn iqn.2026-11.local.netboot:initiator:pc-1');
    expect(s).toContain('sanboot iscsi:198.18.0.1::3260:0:iqn.2026-11.local.netboot:pc-1 || goto failed');
    expect(s).toMatch(/choose --default boot --timeout 20000/);
    expect(s).toContain('clear password');
    // Every goto lands on a label.
    const labels = new Set([...s.matchAll(/^:(\S+)$/gm)].map((m) => m[1]));
    for (const m of s.matchAll(/goto (\w+)/g)) expect(labels.has(m[1])).toBe(true);
  });

  it('writes CHAP credentials, mutual when the target has its own, hex-encoding unsafe secrets', () => {
    const s = renderIpxeScript(
      { ...client, chap: { user: 'pc1', secret: 's3cret${x} y', targetUser: 'tgt', targetSecret: 'targetsecret12' } },
      { serverAddress: '198.18.0.1', iscsiPort: 3260 },
    );
    expect(s).toContain('set username pc1');
    expect(s).toContain(`set password:hex ${[...Buffer.from('s3cret${x} y')].map((b) => b.toString(16).padStart(2, '0')).join(':')}`);
    expect(s).toContain('set reverse-username tgt');
    expect(s).toContain('set reverse-password targetsecret12');
    expect(s).not.toContain('${x}');
  });

  it('menu script shows the MAC and defaults to exit', () => {
    const s = renderMenuScript(mac, { scriptUrl: 'http://198.18.0.1:8080/boot/52-54-00-12-34-56.ipxe' });
    expect(s).toContain(mac);
    expect(s).toMatch(/choose --default exit --timeout \d+/);
    expect(s).toContain('chain --replace --autofree http://198.18.0.1:8080/boot/52-54-00-12-34-56.ipxe');
  });
});

describe('bootScriptFor', () => {
  function sctx(extra: Partial<BootScriptContext> = {}) {
    const events: BootEvent[] = [];
    const c: BootScriptContext = {
      clients: { byMac: (m) => (m === mac ? client : undefined) },
      serverAddress: '198.18.0.1',
      httpPort: 8080,
      iscsiPort: 3260,
      unknownClients: 'ignore',
      events: { record: (e) => events.push(e) },
      ...extra,
    };
    return { c, events };
  }

  it("serves a known client's script and records script-fetched", async () => {
    const { c, events } = sctx();
    const r = await bootScriptFor('52-54-00-12-34-56.ipxe', c);
    expect(r.status).toBe(200);
    expect(r.body).toContain('sanboot iscsi:');
    expect(events).toEqual([{ mac, stage: 'script-fetched', detail: { kind: 'sanboot', target: client.target } }]);
  });

  it('400 for a non-MAC, 404 for an unknown client under "ignore", a menu under "menu"', async () => {
    const { c } = sctx();
    expect((await bootScriptFor('../etc.ipxe', c)).status).toBe(400);
    expect((await bootScriptFor('02-00-00-00-00-99.ipxe', c)).status).toBe(404);
    const m = await bootScriptFor('02-00-00-00-00-99.ipxe', sctx({ unknownClients: 'menu' }).c);
    expect(m.status).toBe(200);
    expect(m.body).toContain('02:00:00:00:00:99');
  });

  it('"enroll" calls the callback once for concurrent fetches, with the arch from DHCP', async () => {
    const enrolled = { ...client, mac: '02:00:00:00:00:98', name: 'new', target: 'iqn.2026-11.local.netboot:new' };
    const enroll = vi.fn(async () => enrolled);
    const { c, events } = sctx({ unknownClients: 'enroll', enroll, archOf: () => 7 });
    // Issue #13: the static address never enrols (anyone could create disks with it).
    const untrusted = await bootScriptFor('02-00-00-00-00-98.ipxe', c);
    expect(untrusted.body).not.toContain('sanboot');
    expect(enroll).not.toHaveBeenCalled();
    events.length = 0;
    const trusted = { trusted: true };
    const [a, b] = await Promise.all([bootScriptFor('02-00-00-00-00-98.ipxe', c, trusted), bootScriptFor('02:00:00:00:00:98.ipxe', c, trusted)]);
    expect(enroll).toHaveBeenCalledTimes(1);
    expect(enroll).toHaveBeenCalledWith('02:00:00:00:00:98', 7);
    expect(a.body).toContain('iqn.2026-11.local.netboot:new');
    expect(b.body).toBe(a.body);
    expect(events[0]).toMatchObject({ stage: 'script-fetched', detail: { kind: 'enrolled' } });
  });

  it('a failed enrolment yields a menu naming the error', async () => {
    const { c } = sctx({
      unknownClients: 'enroll',
      enroll: async () => {
        throw new Error('image debian not found');
      },
    });
    const r = await bootScriptFor('02-00-00-00-00-97.ipxe', c, { trusted: true });
    expect(r.status).toBe(200);
    expect(r.body).toContain('enrolment failed: image debian not found');
  });
});
