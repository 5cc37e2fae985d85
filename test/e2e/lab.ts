/**
 * The end-to-end boot lab: a network namespace with a bridge (198.18.0.1/24, RFC 2544's
 * benchmarking range), tap devices for qemu clients, extra "hosts" (namespaces joined by veth) for
 * peers such as a router's DHCP server, and qemu runs whose serial console is captured to a file
 * and scanned for the `E2E-STAGE:` markers the test disk's initramfs prints (build-disk.sh).
 *
 * Everything is bounded in time and torn down by destroy(); names are unique per process
 * (nb-e2e-<pid>-...) so parallel runs and teammates' namespaces never collide. See
 * test/e2e/README.md ("Lab facts") for the facts this relies on (TCG only, e1000 + iPXE ROM, OVMF).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, createWriteStream, existsSync, mkdirSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';

/** Tools the lab needs; tests skip (with the list) when any is missing. */
export const LAB_TOOLS = ['ip', 'qemu-system-x86_64'] as const;

/** Firmware files used by BIOS (SeaBIOS + iPXE PXE ROM) and UEFI (OVMF + iPXE EFI ROM) clients. */
export const FIRMWARE = {
  biosRom: '/usr/lib/ipxe/qemu/pxe-e1000.rom',
  efiRom: '/usr/lib/ipxe/qemu/efi-e1000.rom',
  ovmfCode: '/usr/share/OVMF/OVMF_CODE.fd',
  ovmfVars: '/usr/share/OVMF/OVMF_VARS.fd',
  /** Secure Boot: the SMM build and variables with Microsoft's keys enrolled (Debian's ovmf). */
  ovmfSecureCode: '/usr/share/OVMF/OVMF_CODE_4M.secboot.fd',
  ovmfSecureVars: '/usr/share/OVMF/OVMF_VARS_4M.ms.fd',
  /** ARM64 clients (issue #15): qemu-system-aarch64 -M virt with AAVMF (Debian's qemu-efi-aarch64). */
  aavmfCode: '/usr/share/AAVMF/AAVMF_CODE.fd',
  aavmfVars: '/usr/share/AAVMF/AAVMF_VARS.fd',
} as const;

/** Returns the path of an executable on PATH (or in /usr/sbin, /sbin), or undefined. */
export function which(tool: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin', '/usr/bin'])) {
    const p = join(dir, tool);
    if (dir && existsSync(p)) return p;
  }
  return undefined;
}

/** The tools (or firmware files) from `needed` that are absent; empty when the lab can run. */
export function missingTools(needed: readonly string[]): string[] {
  return needed.filter((t) => (t.startsWith('/') ? !existsSync(t) : !which(t)));
}

/** Why the lab cannot run here (not root, tools missing), or undefined when it can. */
export function labUnavailableReason(extra: readonly string[] = []): string | undefined {
  if (process.getuid?.() !== 0) return 'the e2e lab needs root (network namespaces, tap devices)';
  const missing = missingTools([...LAB_TOOLS, FIRMWARE.biosRom, ...extra]);
  return missing.length ? `missing: ${missing.join(', ')}` : undefined;
}

/** Runs a command synchronously; throws with its stderr when it fails. */
export function run(cmd: string, args: string[], opts: { timeoutMs?: number; input?: string } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: opts.timeoutMs ?? 30_000, input: opts.input });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Like run() but never throws (cleanup paths). */
function tryRun(cmd: string, args: string[]): void {
  spawnSync(cmd, args, { stdio: 'ignore', timeout: 10_000 });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A long-running process started inside the lab, stopped on destroy(). */
export interface LabProcess {
  name: string;
  child: ChildProcess;
  logFile: string;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  exited: Promise<number | string>;
  /** SIGTERM, then SIGKILL after graceMs if it is still alive. */
  stop(graceMs?: number): Promise<void>;
}

/** Options for Lab. */
export interface LabOptions {
  /** Unique suffix; defaults to the pid. */
  id?: string;
  /** Where logs and per-run files go (created). */
  workDir: string;
  /** Bridge address with prefix. */
  bridgeCidr?: string;
}

/** One lab network: namespace + bridge, its taps, peer hosts and processes. */
export class Lab {
  readonly ns: string;
  readonly bridge = 'br0';
  readonly serverAddress: string;
  readonly workDir: string;
  private readonly cidr: string;
  private taps = 0;
  private readonly hosts: string[] = [];
  private readonly procs: LabProcess[] = [];
  private readonly qemus: QemuRun[] = [];
  private created = false;

  constructor(opts: LabOptions) {
    const id = opts.id ?? String(process.pid);
    this.ns = `nb-e2e-${id}`;
    this.cidr = opts.bridgeCidr ?? '198.18.0.1/24';
    this.serverAddress = this.cidr.split('/')[0]!;
    this.workDir = opts.workDir;
  }

  /** Creates the namespace, brings up lo and the bridge with its address. Idempotent-unsafe: call once. */
  create(): void {
    mkdirSync(this.workDir, { recursive: true });
    removeStaleLabs();
    // A leftover from a crashed run with the same id would make `ip netns add` fail.
    tryRun('ip', ['netns', 'del', this.ns]);
    run('ip', ['netns', 'add', this.ns]);
    this.created = true;
    this.ip(['link', 'set', 'lo', 'up']);
    this.ip(['link', 'add', this.bridge, 'type', 'bridge']);
    // No STP, no forwarding delay: a tap must pass traffic the moment qemu opens it, or the
    // PXE ROM's first DISCOVERs are lost.
    this.ip(['link', 'set', this.bridge, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
    this.ip(['addr', 'add', this.cidr, 'dev', this.bridge]);
    this.ip(['link', 'set', this.bridge, 'up']);
  }

  /** `ip ARGS` inside the namespace. */
  ip(args: string[]): string {
    return run('ip', ['-n', this.ns, ...args]);
  }

  /** Runs a command inside the namespace and returns stdout (throws on failure). */
  exec(cmd: string, args: string[], opts: { timeoutMs?: number; input?: string } = {}): string {
    return run('ip', ['netns', 'exec', this.ns, cmd, ...args], opts);
  }

  /** Adds a tap device enslaved to the bridge; returns its name. */
  addTap(): string {
    const tap = `tap${this.taps++}`;
    this.ip(['tuntap', 'add', 'dev', tap, 'mode', 'tap']);
    this.ip(['link', 'set', tap, 'master', this.bridge]);
    this.ip(['link', 'set', tap, 'up']);
    return tap;
  }

  /**
   * Adds another host on the lab's LAN: a namespace joined to the bridge by a veth pair, with
   * `cidr` on its end (e.g. the router whose DHCP server hands out addresses in proxy-mode tests).
   * Returns the host's namespace name.
   */
  addHost(name: string, cidr: string): string {
    const hostNs = `${this.ns}-${name}`;
    tryRun('ip', ['netns', 'del', hostNs]);
    run('ip', ['netns', 'add', hostNs]);
    this.hosts.push(hostNs);
    const inside = `v${name}`.slice(0, 15);
    const outside = `vb${name}`.slice(0, 15);
    this.ip(['link', 'add', outside, 'type', 'veth', 'peer', 'name', inside, 'netns', hostNs]);
    this.ip(['link', 'set', outside, 'master', this.bridge]);
    this.ip(['link', 'set', outside, 'up']);
    run('ip', ['-n', hostNs, 'link', 'set', 'lo', 'up']);
    run('ip', ['-n', hostNs, 'link', 'set', inside, 'name', 'eth0']);
    run('ip', ['-n', hostNs, 'addr', 'add', cidr, 'dev', 'eth0']);
    run('ip', ['-n', hostNs, 'link', 'set', 'eth0', 'up']);
    return hostNs;
  }

  /**
   * Starts a long-running process inside the namespace (or inside `inNs`), stdout+stderr to
   * <workDir>/<name>.log. `ip netns exec` execs the command, so the child's pid is the daemon's.
   */
  startProcess(name: string, cmd: string, args: string[], opts: { inNs?: string; env?: NodeJS.ProcessEnv } = {}): LabProcess {
    const logFile = join(this.workDir, `${name}.log`);
    const log = createWriteStream(logFile);
    const child = spawn('ip', ['netns', 'exec', opts.inNs ?? this.ns, cmd, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
    });
    child.stdout!.pipe(log, { end: false });
    child.stderr!.pipe(log, { end: false });
    const exited = new Promise<number | string>((resolve) => {
      child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
      child.once('error', (err) => resolve(`spawn error: ${err.message}`));
    });
    // Say in the log how the process ended: a daemon that dies mid-test leaves no other trace.
    void exited.then((how) => setTimeout(() => log.end(`\n[lab] ${name} exited: ${how}\n`), 50));
    const proc: LabProcess = {
      name,
      child,
      logFile,
      exited,
      async stop(graceMs = 2000) {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGTERM');
        const done = await Promise.race([exited.then(() => true), sleep(graceMs).then(() => false)]);
        if (!done) {
          // tgtd ignores SIGTERM while it has targets (it wants `tgtadm --op delete`): kill it.
          child.kill('SIGKILL');
          await Promise.race([exited, sleep(2000)]);
        }
      },
    };
    this.procs.push(proc);
    return proc;
  }

  /** Boots a qemu client attached to a new tap; see QemuOptions. */
  startQemu(opts: QemuOptions): QemuRun {
    const tap = this.addTap();
    const q = new QemuRun(this, tap, opts);
    this.qemus.push(q);
    return q;
  }

  /** Stops every qemu and process, deletes peer hosts and the namespace. Safe to call twice. */
  async destroy(): Promise<void> {
    await Promise.all(this.qemus.map((q) => q.kill()));
    await Promise.all(this.procs.map((p) => p.stop()));
    for (const h of this.hosts.splice(0)) tryRun('ip', ['netns', 'del', h]);
    if (this.created) tryRun('ip', ['netns', 'del', this.ns]);
    this.created = false;
  }
}

/**
 * Deletes lab namespaces left by runs that were killed before their cleanup (nb-e2e-<pid>...
 * whose pid is gone), ending the processes still inside them by pid. Only this lab's names.
 */
export function removeStaleLabs(): void {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8', timeout: 10_000 });
  for (const line of (r.stdout ?? '').split('\n')) {
    const m = /^(nb-e2e-(\d+)\S*)/.exec(line);
    if (!m) continue;
    const pid = Number(m[2]);
    if (pid === process.pid || isAlive(pid)) continue;
    const pids = spawnSync('ip', ['netns', 'pids', m[1]!], { encoding: 'utf8', timeout: 10_000 }).stdout ?? '';
    for (const p of pids.split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(p), 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    tryRun('ip', ['netns', 'del', m[1]!]);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** How one qemu client boots. */
export interface QemuOptions {
  /** Run name, used for the serial log file. */
  name: string;
  mac: string;
  /**
   * 'uefi-secureboot' (issue #15): q35 + SMM with OVMF's Secure Boot build and Microsoft's keys
   * enrolled, booting from the firmware's own virtio-net PXE (an unsigned iPXE option ROM would
   * be refused): only the signed shim + GRUB road gets past it.
   */
  firmware: 'bios' | 'uefi' | 'uefi-secureboot' | 'arm64-uefi';
  /** Guest RAM in MiB; default 256 (BIOS) / 512 (UEFI, OVMF wants more). */
  memoryMiB?: number;
  /** qemu is killed after this long; default 180 s. */
  timeoutMs?: number;
}

/** One marker the initramfs printed, with when it appeared (ms after qemu started). */
export interface SerialMarker {
  /** STAGE/FAIL/DHCP/IBFT/WARN/INFO come from the initramfs; FW from firmware/kernel milestones. */
  kind: 'STAGE' | 'FAIL' | 'DHCP' | 'IBFT' | 'WARN' | 'INFO' | 'FW' | 'SECUREBOOT' | 'CMDLINE-LOGIN';
  text: string;
  atMs: number;
}

/** The outcome of one client boot. */
export interface BootResult {
  name: string;
  mac: string;
  firmware: QemuOptions['firmware'];
  serialLog: string;
  markers: SerialMarker[];
  /** ms from qemu start to `E2E-STAGE: root-mounted`, or undefined if never reached. */
  rootMountedMs?: number;
  /** ms from qemu start to exit. */
  totalMs: number;
  /** The N of `E2E-STAGE: wrote-line N`. */
  wroteLine?: number;
  /** True when qemu was killed by the time limit. */
  timedOut: boolean;
  /** The firmware message that ended the run early ("No bootable device"), if any. */
  deadEnd?: string;
  exitCode: number | string;
}

const MARKER = /E2E-(STAGE|FAIL|DHCP|IBFT|WARN|INFO|SECUREBOOT|CMDLINE-LOGIN): ([^\r\n]*)/g;

/** Firmware and kernel milestones before the initramfs runs, for the per-boot time breakdown. */
const MILESTONES: Array<[RegExp, string]> = [
  [/iPXE initialising devices/, 'ipxe-start'],
  [/Configuring \(net0/, 'ipxe-dhcp'],
  [/Registered SAN device/, 'san-registered'],
  [/Booting from SAN device/, 'sanboot'],
  // The GRUB road (issue #15): shim fetching GRUB, then GRUB's banner.
  [/Fetching Netboot Image/, 'shim-start'],
  [/Welcome to GRUB/, 'grub-start'],
  // syslinux prints this after reading vmlinuz and initrd.gz through iPXE's INT13/EFI disk;
  // with `quiet` the kernel itself prints nothing until the initramfs's markers.
  [/Probing EDD/, 'kernel-loaded'],
  [/Linux version \d/, 'kernel-start'],
];

/**
 * Firmware messages after which the boot under test has failed: iPXE's sanboot could not open
 * the disk (a retry would only hide the first failure), SeaBIOS ran out of boot devices, the
 * kernel panicked. Ending qemu there turns a 3-minute time-out into a fast, explained failure.
 */
const DEAD_END = /No bootable device|Boot failed: not a bootable disk|Kernel panic - not syncing|Could not open SAN device/;

/**
 * One qemu process: TCG (KVM makes iPXE hang on these nested machines: test/e2e/README.md), e1000 with the
 * iPXE ROM as the boot device, `-nographic -monitor none` so firmware and ttyS0 share stdout,
 * `-no-reboot` so the guest's poweroff (or a triple fault) ends the run.
 */
export class QemuRun {
  readonly serialLog: string;
  readonly markers: SerialMarker[] = [];
  private readonly child: ChildProcess;
  private readonly started = Date.now();
  private readonly out: WriteStream;
  private buffer = '';
  private scanned = 0;
  private waiters: Array<() => void> = [];
  private timedOut = false;
  /** The firmware/kernel message that ended the run early, if any. */
  deadEnd?: string;
  private readonly timer: NodeJS.Timeout;
  private readonly exit: Promise<number | string>;

  constructor(
    lab: Lab,
    readonly tap: string,
    readonly opts: QemuOptions,
  ) {
    this.serialLog = join(lab.workDir, `${opts.name}.serial.log`);
    this.out = createWriteStream(this.serialLog);
    const rom = opts.firmware === 'uefi' ? FIRMWARE.efiRom : FIRMWARE.biosRom;
    const secure = opts.firmware === 'uefi-secureboot';
    const args = [
      '-machine',
      secure ? 'q35,smm=on' : 'pc',
      '-accel',
      'tcg',
      '-m',
      String(opts.memoryMiB ?? (opts.firmware === 'bios' ? 256 : 512)),
      '-nographic',
      '-monitor',
      'none',
      '-no-reboot',
      '-netdev',
      `tap,id=n0,ifname=${tap},script=no,downscript=no`,
      '-device',
      secure ? `virtio-net-pci,netdev=n0,mac=${opts.mac},romfile=,bootindex=1` : `e1000,netdev=n0,mac=${opts.mac},romfile=${rom},bootindex=1`,
    ];
    if (secure) {
      const vars = join(lab.workDir, `${opts.name}.OVMF_VARS.fd`);
      copyFileSync(FIRMWARE.ovmfSecureVars, vars);
      args.push(
        '-global',
        'driver=cfi.pflash01,property=secure,value=on',
        '-drive',
        `if=pflash,format=raw,readonly=on,file=${FIRMWARE.ovmfSecureCode}`,
        '-drive',
        `if=pflash,format=raw,file=${vars}`,
      );
    }
    if (opts.firmware === 'uefi') {
      const vars = join(lab.workDir, `${opts.name}.OVMF_VARS.fd`);
      copyFileSync(FIRMWARE.ovmfVars, vars);
      args.push('-drive', `if=pflash,format=raw,readonly=on,file=${FIRMWARE.ovmfCode}`, '-drive', `if=pflash,format=raw,file=${vars}`);
    }
    let binary = 'qemu-system-x86_64';
    if (opts.firmware === 'arm64-uefi') {
      // ARM64: the firmware's own virtio-net PXE; cortex-a57 is much faster under TCG than `max`.
      binary = 'qemu-system-aarch64';
      const vars = join(lab.workDir, `${opts.name}.AAVMF_VARS.fd`);
      copyFileSync(FIRMWARE.aavmfVars, vars);
      args.splice(
        0,
        args.length,
        '-M',
        'virt',
        '-cpu',
        'cortex-a57',
        '-accel',
        'tcg',
        '-m',
        String(opts.memoryMiB ?? 1024),
        '-nographic',
        '-monitor',
        'none',
        '-no-reboot',
        '-netdev',
        `tap,id=n0,ifname=${tap},script=no,downscript=no`,
        '-device',
        `virtio-net-pci,netdev=n0,mac=${opts.mac},romfile=,bootindex=1`,
        '-drive',
        `if=pflash,format=raw,readonly=on,file=${FIRMWARE.aavmfCode}`,
        '-drive',
        `if=pflash,format=raw,file=${vars}`,
      );
    }
    this.child = spawn('ip', ['netns', 'exec', lab.ns, binary, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const onData = (chunk: Buffer) => {
      this.out.write(chunk);
      this.buffer += chunk.toString('latin1');
      this.scan();
    };
    this.child.stdout!.on('data', onData);
    this.child.stderr!.on('data', onData);
    this.exit = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        clearTimeout(this.timer);
        this.out.end();
        this.wake();
        resolve(code ?? signal ?? 'unknown');
      });
      this.child.once('error', (err) => resolve(`spawn error: ${err.message}`));
    });
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.child.kill('SIGKILL');
    }, opts.timeoutMs ?? 180_000);
  }

  /** Parses complete marker lines that arrived since the last scan. */
  private scan(): void {
    const end = this.buffer.lastIndexOf('\n');
    if (end < this.scanned) return;
    const text = this.buffer.slice(this.scanned, end + 1);
    this.scanned = end + 1;
    for (const [re, name] of MILESTONES) {
      if (re.test(text) && !this.markers.some((m) => m.kind === 'FW' && m.text === name)) {
        this.markers.push({ kind: 'FW', text: name, atMs: Date.now() - this.started });
      }
    }
    for (const m of text.matchAll(MARKER)) {
      this.markers.push({ kind: m[1] as SerialMarker['kind'], text: m[2]!.trim(), atMs: Date.now() - this.started });
    }
    if (DEAD_END.test(text)) {
      this.deadEnd = DEAD_END.exec(text)![0];
      this.child.kill('SIGKILL');
    }
    this.wake();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** True once qemu has exited. */
  get done(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /**
   * Waits until a STAGE marker starting with `stage` appears; rejects on an E2E-FAIL marker, on
   * qemu exiting first, or after timeoutMs, with the tail of the serial log in the message.
   */
  async waitForStage(stage: string, timeoutMs: number): Promise<SerialMarker> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.markers.find((m) => m.kind === 'STAGE' && m.text.startsWith(stage));
      if (hit) return hit;
      const failed = this.markers.find((m) => m.kind === 'FAIL');
      if (failed) throw new Error(`${this.opts.name}: initramfs failed (${failed.text}) before "${stage}"\n${this.tail()}`);
      if (this.done) {
        const why = this.timedOut ? ' (time limit)' : this.deadEnd ? ` (${this.deadEnd})` : '';
        throw new Error(`${this.opts.name}: qemu exited before "${stage}"${why}\n${this.tail()}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.opts.name}: no "${stage}" within ${timeoutMs} ms\n${this.tail()}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 1000));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** The last `lines` lines of the serial log, for failure messages. */
  tail(lines = 40): string {
    // Strip ANSI colour codes iPXE prints.
    return this.buffer
      .replace(/\x1b\[[0-9;]*[A-Za-z]/g, '')
      .split('\n')
      .slice(-lines)
      .join('\n');
  }

  /** Waits for qemu to exit (poweroff or time limit) and summarises the boot. */
  async result(): Promise<BootResult> {
    const exitCode = await this.exit;
    const rootMounted = this.markers.find((m) => m.kind === 'STAGE' && m.text === 'root-mounted');
    const wrote = this.markers.find((m) => m.kind === 'STAGE' && m.text.startsWith('wrote-line '));
    return {
      name: this.opts.name,
      mac: this.opts.mac,
      firmware: this.opts.firmware,
      serialLog: this.serialLog,
      markers: [...this.markers],
      rootMountedMs: rootMounted?.atMs,
      totalMs: Date.now() - this.started,
      wroteLine: wrote ? Number(wrote.text.split(' ')[1]) : undefined,
      timedOut: this.timedOut,
      deadEnd: this.deadEnd,
      exitCode,
    };
  }

  /** Kills qemu now (cleanup). */
  async kill(): Promise<void> {
    if (this.done) return;
    this.child.kill('SIGKILL');
    await Promise.race([this.exit, sleep(3000)]);
  }
}

/** One line for the boot-time report: `name  firmware  root-mounted 31.2 s  (total 35.0 s)`. */
export function formatBoot(r: BootResult): string {
  const s = (ms?: number) => (ms === undefined ? '   -   ' : `${(ms / 1000).toFixed(1).padStart(5)} s`);
  return `${r.name.padEnd(28)} ${r.firmware.padEnd(4)}  root-mounted ${s(r.rootMountedMs)}  total ${s(r.totalMs)}${r.timedOut ? '  (TIMED OUT)' : ''}${r.deadEnd ? `  (${r.deadEnd})` : ''}`;
}

/** `stage@seconds` for every FW and STAGE marker: where a boot spent its time. */
export function formatTimeline(r: BootResult): string {
  return r.markers
    .filter((m) => m.kind === 'FW' || m.kind === 'STAGE')
    .map((m) => `${m.text.split(' ')[0]}@${(m.atMs / 1000).toFixed(1)}`)
    .join(' ');
}

/** A locally administered unicast MAC (52:54:00 is qemu's prefix) derived from a small number. */
export function labMac(n: number): string {
  return `52:54:00:e2:${((n >> 8) & 0xff).toString(16).padStart(2, '0')}:${(n & 0xff).toString(16).padStart(2, '0')}`;
}
