/**
 * Issue #15: the GRUB road as a policy outcome (DHCP answers by architecture), its generated
 * configs (golden files), and the TFTP file source that serves a client's config, kernel and
 * initramfs only to that client.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { archFamily } from '../../../appliance/boot/arch';
import type { FsOpener } from '../../../appliance/boot/disk-files/kernel-lookup';
import { GrubConfigError, renderGrubClientConfig, renderGrubDispatcher } from '../../../appliance/boot/grub-config';
import { GrubFileSource } from '../../../appliance/boot/grub-files';
import { type BootFacts, type BootPolicyContext, decideBoot, onGrubRoad, roadFor } from '../../../appliance/boot/policy';
import { findSignedBinaries } from '../../../appliance/boot/signed-binaries';
import { silentLogger } from '../../../appliance/core/log';
import type { BootEvent, ClientRecord } from '../../../appliance/core/model';
import { isRefusal, memoryFile, type TftpFile } from '../../../appliance/tftp/file-source';

const mac = '52:54:00:12:34:56';
const base: ClientRecord = {
  mac,
  name: 'sb-pc',
  image: 'debian',
  disk: 'client-525400123456',
  target: 'iqn.2026-11.local.netboot:client-525400123456',
  lun: 0,
  initiatorName: 'iqn.2026-11.local.netboot:initiator-525400123456',
  initiators: [],
  chap: { user: 'iqn.2026-11.local.netboot:initiator-525400123456', secret: 'Zx7.k2-Qw9aB' },
  ip: null,
  createdAt: 0,
};
const signed = {
  x64: { shim: '/s/shimx64.efi.signed', grub: '/s/grubnetx64.efi.signed' },
  aa64: { shim: '/s/shimaa64.efi.signed', grub: '/s/grubnetaa64.efi.signed' },
};
const ipxe = { dir: '/usr/lib/ipxe', bios: 'undionly.kpxe', efiX64: 'ipxe.efi' };

function ctx(client: ClientRecord, extra: Partial<BootPolicyContext> = {}): BootPolicyContext {
  return {
    clients: { byMac: (m) => (m === client.mac ? client : undefined) },
    serverAddress: '198.18.0.1',
    httpPort: 8080,
    iscsiPort: 3260,
    unknownClients: 'ignore',
    binaries: ipxe,
    signed,
    ...extra,
  };
}
const firmware = (arch: number | undefined, vc = `PXEClient:Arch:${String(arch ?? 0).padStart(5, '0')}:UNDI:003016`): BootFacts => ({
  mac,
  arch,
  vendorClass: vc,
  userClass: undefined,
  ipxe: undefined,
});

describe('the road per client and architecture', () => {
  it.each([
    // arch, client setting, boot.uefiX64Road -> answer
    [7, 'auto', 'ipxe', { kind: 'chainload', file: 'ipxe.efi' }],
    [9, 'auto', 'ipxe', { kind: 'chainload', file: 'ipxe.efi' }],
    [7, 'auto', 'grub', { kind: 'chainload', file: 'shimx64.efi' }],
    [7, 'grub', 'ipxe', { kind: 'chainload', file: 'shimx64.efi' }],
    [9, 'grub', 'ipxe', { kind: 'chainload', file: 'shimx64.efi' }],
    [7, 'ipxe', 'grub', { kind: 'chainload', file: 'ipxe.efi' }],
    [11, 'auto', 'ipxe', { kind: 'chainload', file: 'shimaa64.efi' }],
    // BIOS has no shim: a client set to grub still gets iPXE there.
    [0, 'grub', 'grub', { kind: 'chainload', file: 'undionly.kpxe' }],
    [undefined, 'grub', 'grub', { kind: 'chainload', file: 'undionly.kpxe' }],
  ] as const)('arch %s, client %s, uefiX64Road %s -> %o', (arch, road, uefiX64Road, want) => {
    expect(decideBoot(firmware(arch), ctx({ ...base, road }, { uefiX64Road }))).toMatchObject({ ...want, family: archFamily(arch) });
  });

  it('UEFI HTTP boot (16, 19) is not answered on the GRUB road (TFTP only), so the firmware takes PXE', () => {
    const c = { ...base, road: 'grub' as const };
    expect(decideBoot(firmware(16, 'HTTPClient:Arch:00016:UNDI:003001'), ctx(c))).toMatchObject({
      kind: 'ignore',
      reason: expect.stringMatching(/PXE\/TFTP only/),
    });
    expect(decideBoot(firmware(19, 'HTTPClient:Arch:00019:UNDI:003001'), ctx(c))).toMatchObject({ kind: 'ignore' });
    // ...and the iPXE road still answers HTTP boot with its binary's URL.
    expect(decideBoot(firmware(16, 'HTTPClient:Arch:00016:UNDI:003001'), ctx({ ...c, road: 'ipxe' }))).toMatchObject({
      kind: 'http-boot',
      url: 'http://198.18.0.1:8080/boot/ipxe.efi',
    });
  });

  it('ARM64 auto prefers an installed ARM64 iPXE; without signed binaries the answer says what to install', () => {
    expect(decideBoot(firmware(11), ctx(base, { binaries: { ...ipxe, efiArm64: 'ipxe-arm64.efi' } }))).toMatchObject({
      kind: 'chainload',
      file: 'ipxe-arm64.efi',
    });
    const missing = decideBoot(firmware(11), ctx(base, { signed: {} }));
    expect(missing).toMatchObject({ kind: 'missing-binary', family: 'efi-arm64' });
    expect((missing as { reason: string }).reason).toMatch(/signed shim \+ GRUB/);
  });

  it('an unknown machine never gets the GRUB road (nothing assigned to boot)', () => {
    const unknown = { ...firmware(7), mac: '02:00:00:00:00:99' };
    expect(decideBoot(unknown, ctx(base, { uefiX64Road: 'grub' })).kind).toBe('ignore');
    expect(decideBoot(unknown, ctx(base, { uefiX64Road: 'grub', unknownClients: 'wait' }))).toMatchObject({ kind: 'chainload', file: 'ipxe.efi' });
  });

  it('roadFor and onGrubRoad agree; without a remembered architecture the setting decides', () => {
    expect(roadFor('bios', 'grub', 'grub')).toBe('ipxe');
    expect(onGrubRoad({ ...base, road: 'auto' }, 7, 'grub')).toBe(true);
    expect(onGrubRoad({ ...base, road: 'auto' }, 0, 'grub')).toBe(false);
    expect(onGrubRoad({ ...base, road: 'grub' }, undefined, 'ipxe')).toBe(true);
    expect(onGrubRoad({ ...base, road: 'auto' }, undefined, 'ipxe')).toBe(false);
  });

  it('finds the signed binaries in boot.signedDir first, else at the package paths', () => {
    const have = new Set([
      '/opt/s/shimaa64.efi',
      '/opt/s/grubaa64.efi',
      '/usr/lib/shim/shimx64.efi.signed',
      '/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed',
    ]);
    expect(findSignedBinaries('/opt/s', (p) => have.has(p))).toEqual({
      x64: { shim: '/usr/lib/shim/shimx64.efi.signed', grub: '/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed' },
      aa64: { shim: '/opt/s/shimaa64.efi', grub: '/opt/s/grubaa64.efi' },
    });
  });
});

/** Compares with a golden file; UPDATE_GOLDEN=1 rewrites it. */
function golden(name: string, text: string): void {
  const file = join(__dirname, 'golden', name);
  if (process.env.UPDATE_GOLDEN) writeFileSync(file, text);
  expect(text).toBe(readFileSync(file, 'utf8'));
}

describe('generated GRUB configs (golden files)', () => {
  it('the dispatcher', () => golden('dispatcher.cfg', renderGrubDispatcher({ uiHint: 'Assign it at http://netboot.local' })));

  it('a client with one-way CHAP (initramfs-tools and dracut parameters), its own command line kept', () => {
    golden(
      'client-chap.cfg',
      renderGrubClientConfig({ client: base, serverAddress: '198.18.0.1', iscsiPort: 3260, cmdline: 'root=UUID=1234 ro quiet console=ttyS0', hasInitrd: true }),
    );
  });

  it('mutual CHAP, no initramfs, an image command line that already names ip= and stale iscsi_ words', () => {
    const c = { ...base, name: 'lab "7"', chap: { ...base.chap!, targetUser: 'target', targetSecret: 'T0p.s3cret-x' } };
    golden(
      'client-mutual.cfg',
      renderGrubClientConfig({
        client: c,
        serverAddress: '10.0.0.2',
        iscsiPort: 3261,
        cmdline: 'ip=eth0:dhcp iscsi_target_ip=1.2.3.4 netroot=iscsi:old root=/dev/sda2',
        hasInitrd: false,
      }),
    );
  });

  it('refuses credentials a kernel command line cannot carry instead of mangling them', () => {
    const c = { ...base, chap: { user: 'u', secret: 'with space$' } };
    expect(() => renderGrubClientConfig({ client: c, serverAddress: '198.18.0.1', iscsiPort: 3260, cmdline: '', hasInitrd: true })).toThrow(GrubConfigError);
  });
});

describe('GRUB road files over TFTP', () => {
  const FAT_FS: FsOpener = async () => ({
    open: async (p: string) => {
      const files: Record<string, Buffer> = {
        '/syslinux.cfg': Buffer.from('DEFAULT l\nLABEL l\n KERNEL /vmlinuz\n INITRD /initrd.gz\n APPEND console=ttyS0 quiet\n'),
        '/vmlinuz': Buffer.alloc(5000, 7),
        '/initrd.gz': Buffer.alloc(3000, 9),
      };
      const b = files[p];
      return b ? { size: b.length, read: async (pos: number, len: number) => b.subarray(pos, pos + len) } : undefined;
    },
  });
  const mbr = Buffer.alloc(512);
  mbr.writeUInt16LE(0xaa55, 510);
  mbr[446 + 4] = 0x0e;
  mbr.writeUInt32LE(2048, 446 + 8);
  mbr.writeUInt32LE(2048, 446 + 12);

  function source(neighbour: string | undefined, client: ClientRecord = { ...base, road: 'grub' }) {
    const events: BootEvent[] = [];
    let opened = 0;
    let closed = 0;
    const src = new GrubFileSource({
      clients: { byMac: (m) => (m === client.mac ? client : undefined) },
      onGrubRoad: (c) => c.road === 'grub',
      signed: { x64: signed.x64 },
      openDisk: async () => {
        opened++;
        return { size: 4096 * 512, read: async (o: number, l: number) => (o === 0 ? mbr.subarray(0, l) : Buffer.alloc(l)), close: async () => void closed++ };
      },
      openers: [FAT_FS],
      neighbours: async () => neighbour,
      serverAddress: () => '198.18.0.1',
      iscsiPort: 3260,
      uiHint: 'Assign it at http://netboot.local',
      openHostFile: async (p) => memoryFile(Buffer.from(p)),
      events: { record: (e) => events.push(e) },
      log: silentLogger(),
    });
    return { src, events, counts: () => ({ opened, closed }) };
  }
  const text = async (f: TftpFile) => {
    const b = Buffer.alloc(f.size);
    await f.read(b, 0, f.size, 0);
    await f.close();
    return b.toString();
  };

  it('serves the signed pair under the names shim loads, and the dispatcher to anyone', async () => {
    const { src } = source(undefined);
    expect(await text((await src.resolve('shimx64.efi')) as TftpFile)).toBe('/s/shimx64.efi.signed');
    expect(await text((await src.resolve('/grubx64.efi')) as TftpFile)).toBe('/s/grubnetx64.efi.signed');
    expect(await text((await src.resolve('grub/grub.cfg')) as TftpFile)).toContain('configfile "$prefix/clients/$net_default_mac.cfg"');
    expect(await src.resolve('shimaa64.efi')).toMatchObject({ refused: 'notFound' });
  });

  it("a client's config (with its CHAP secret) goes only to the machine with that MAC", async () => {
    const other = source('52:54:00:00:00:01');
    const r = await other.src.resolve(`grub/clients/${mac}.cfg`, { address: '198.18.0.50' });
    expect(r).toEqual({ refused: 'accessViolation', message: `served only to ${mac} itself` });
    expect(other.counts().opened).toBe(0);
    // Every spelling of another client's files is refused the same way: dashes, no separators,
    // upper case, a leading slash.
    for (const name of [
      `grub/clients/52-54-00-12-34-56.cfg`,
      `GRUB/CLIENTS/525400123456.CFG`,
      `/grub/clients/${mac}/initrd`,
      `grub/clients/52-54-00-12-34-56/linux`,
    ]) {
      expect(await other.src.resolve(name, { address: '198.18.0.50' }), name).toEqual({ refused: 'accessViolation', message: `served only to ${mac} itself` });
    }
    expect(other.counts().opened).toBe(0);
    const none = await source(undefined).src.resolve(`grub/clients/${mac}/linux`, { address: '198.18.0.50' });
    expect(isRefusal(none)).toBe(true);

    const own = source(mac);
    const cfg = await text((await own.src.resolve(`grub/clients/${mac}.cfg`, { address: '198.18.0.50' })) as TftpFile);
    expect(cfg).toContain('iscsi_password=Zx7.k2-Qw9aB');
    // The same file under another spelling is the same file (not the initramfs).
    expect(await text((await own.src.resolve('GRUB/CLIENTS/525400123456.CFG', { address: '198.18.0.50' })) as TftpFile)).toBe(cfg);
    expect(cfg).toContain('console=ttyS0 quiet ip=dhcp');
    const kernel = (await own.src.resolve(`grub/clients/${mac}/linux`, { address: '198.18.0.50' })) as TftpFile;
    expect(kernel.size).toBe(5000);
    expect(own.counts()).toEqual({ opened: 3, closed: 2 });
    await kernel.close();
    expect(own.counts()).toEqual({ opened: 3, closed: 3 });
    expect(own.events.map((e) => e.stage)).toEqual(['grub-config', 'grub-config', 'kernel-fetched']);
  });

  it('a client on the iPXE road, or unknown, has no GRUB files; a disk without a kernel is a timeline error', async () => {
    expect(await source(mac, { ...base, road: 'ipxe' }).src.resolve(`grub/clients/${mac}.cfg`, { address: 'x' })).toMatchObject({ refused: 'notFound' });
    expect(await source(mac).src.resolve('grub/clients/02:00:00:00:00:99.cfg', { address: 'x' })).toMatchObject({ refused: 'notFound' });
    const broken = source(mac);
    (broken.src as unknown as { d: { openers: FsOpener[] } }).d.openers = [];
    const r = await broken.src.resolve(`grub/clients/${mac}.cfg`, { address: 'x' });
    expect(r).toMatchObject({ refused: 'notFound' });
    expect(broken.events).toEqual([
      expect.objectContaining({ stage: 'boot-error', detail: expect.objectContaining({ road: 'grub', reason: expect.stringMatching(/no kernel found/) }) }),
    ]);
    expect(broken.counts()).toEqual({ opened: 1, closed: 1 });
  });
});
