import { readFileSync } from 'node:fs';
import { z } from 'zod';

/**
 * The one configuration schema. Every key has a default, so `{}` (or no file) is a working
 * config: UI/API on :8080, iSCSI on :3260, TFTP on :6969, DHCP off, state under ./var.
 * Unknown keys are errors (a typo must not be silently ignored). The parsed config is frozen.
 */

const port = z.number().int().min(0).max(65535); // 0 = any free port (tests)
const host = z.string().min(1);
const ipv4 = z.ipv4();
const strict = <T extends z.ZodRawShape>(shape: T) => z.strictObject(shape);

export const configSchema = strict({
  /** The one place state lives: database, images, tokens. */
  dataDir: z.string().min(1).default('./var'),
  /** The IPv4 address clients are told to reach us at; 'auto' picks the DHCP interface's or the first non-loopback one. */
  serverAddress: z.union([z.literal('auto'), ipv4]).default('auto'),
  log: strict({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    format: z.enum(['auto', 'json', 'pretty']).default('auto'),
  }).prefault({}),
  http: strict({
    host: host.default('0.0.0.0'),
    port: port.default(8080),
    /**
     * Extra Host header names the API answers to, besides localhost, the appliance's own
     * addresses and `<mdns.name>.local` (DNS-rebinding defence, docs/security.md).
     */
    allowedHosts: z.array(z.string().min(1).max(253)).default([]),
  }).prefault({}),
  iscsi: strict({
    enabled: z.boolean().default(true),
    host: host.default('0.0.0.0'),
    port: port.default(3260),
    /** Targets are named `<iqnPrefix>:<client>`; initiators `<iqnPrefix>:initiator:<client>`. */
    iqnPrefix: z
      .string()
      .regex(/^iqn\.\d{4}-\d{2}\.[a-z0-9.-]+$/, 'must look like iqn.YYYY-MM.reversed.domain')
      .default('iqn.2026-11.local.netboot'),
    maxConnections: z.number().int().min(1).max(4096).default(256),
    /**
     * NOP-In ping interval for initiators that answer pings (never used to drop iPXE). A client
     * powered off without logging out is dropped one interval after its last PDU plus 5 s for
     * the answer (10 s by default). 0 = off.
     */
    nopInIntervalSeconds: z.number().int().min(0).max(3600).default(5),
    /** Connections one source address may hold at once (docs/security.md). */
    maxConnectionsPerAddress: z.number().int().min(1).max(4096).default(8),
    /** A connection not in full-feature phase of a normal session by then is closed (login, discovery). */
    loginTimeoutSeconds: z.number().int().min(1).max(3600).default(15),
    /** A discovery session is closed after this long, whatever it does. */
    discoveryTimeoutSeconds: z.number().int().min(1).max(3600).default(30),
    /** Data-In bytes queued on one connection before the target stops reading its next command. */
    maxQueuedDataInMiB: z.number().int().min(1).max(1024).default(16),
  }).prefault({}),
  tftp: strict({
    enabled: z.boolean().default(true),
    host: host.default('0.0.0.0'),
    port: port.default(6969),
    /** Extra directory served read-only besides the iPXE binaries ('' = <dataDir>/tftp). */
    root: z.string().default(''),
    /** Retransmission timeout when the client does not negotiate one (RFC 2349), seconds. */
    timeoutSeconds: z.number().int().min(1).max(255).default(2),
    retries: z.number().int().min(1).max(20).default(5),
    maxTransfers: z.number().int().min(1).max(10000).default(256),
  }).prefault({}),
  dhcp: strict({
    mode: z.enum(['off', 'proxy', 'full']).default('off'),
    /** Interface to serve on ('' = all); full mode needs one. */
    interface: z.string().default(''),
    port: port.default(67),
    proxyPort: port.default(4011),
    /** Full mode: first and last address handed out. */
    range: z.union([z.tuple([ipv4, ipv4]), z.tuple([])]).default([]),
    netmask: ipv4.default('255.255.255.0'),
    router: z.union([ipv4, z.literal('')]).default(''),
    dns: z.array(ipv4).default([]),
    domain: z.string().default(''),
    leaseSeconds: z
      .number()
      .int()
      .min(60)
      .max(30 * 86400)
      .default(3600),
    /** Full mode listens this long for another DHCP server before serving (and refuses if one answers). */
    conflictProbeSeconds: z.number().min(0).max(60).default(3),
    /** Full mode: static per-MAC addresses besides the clients' own `ip` (best outside `range`). */
    reservations: z
      .array(
        strict({
          mac: z
            .string()
            .regex(/^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$/)
            .transform((m) => m.toLowerCase().replace(/-/g, ':')),
          ip: ipv4,
        }),
      )
      .default([]),
  }).prefault({}),
  boot: strict({
    /** Where undionly.kpxe, ipxe.efi, snponly.efi are (Debian package `ipxe`). */
    ipxeDir: z.string().default('/usr/lib/ipxe'),
    /**
     * What an unknown MAC gets: nothing, a menu script, a new client disk of enrollImage, or a
     * screen that waits for an admin to assign it an image (boot/policy.ts). 'auto': 'wait' in
     * full DHCP mode, 'ignore' otherwise (a proxy must not take over office PCs that PXE-boot first).
     */
    unknownClients: z.enum(['auto', 'ignore', 'menu', 'enroll', 'wait']).default('auto'),
    enrollImage: z.string().default(''),
    /** UEFI x64 iPXE build: ipxe.efi (own NIC drivers) or snponly.efi (the firmware's driver, for odd NICs). */
    efiBinary: z.enum(['ipxe.efi', 'snponly.efi']).default('ipxe.efi'),
    /**
     * New clients get generated CHAP credentials (true), or none: name-only logins for labs
     * (false). Mutual CHAP stays optional either way.
     */
    chapByDefault: z.boolean().default(true),
    /** Seconds a one-time boot-script URL handed out in a DHCP answer stays valid. */
    scriptTokenSeconds: z.number().int().min(5).max(3600).default(120),
    /**
     * The road a UEFI x64 client with road 'auto' takes (issue #15, docs/boot-roads.md): 'ipxe'
     * (sanboot: any OS on the disk, needs Secure Boot off) or 'grub' (signed shim + GRUB + the
     * disk's own Linux kernel: works with Secure Boot on, Linux disks only). ARM64 always takes 'grub'.
     */
    uefiX64Road: z.enum(['ipxe', 'grub']).default('ipxe'),
    /** Where shimx64.efi/grubx64.efi and shimaa64.efi/grubaa64.efi are ('' = Debian's package paths). */
    signedDir: z.string().default(''),
  }).prefault({}),
  /**
   * Answering iPXE's IPv6 router solicitations (appliance/ra/, docs/decisions.md "IPv6 router
   * solicitations"): only for clients being booted, with an RA that configures nothing (router
   * lifetime 0, no prefix), never unasked, and not at all while another router advertises.
   */
  ra: strict({
    enabled: z.boolean().default(true),
    /** Interface to answer on ('' = dhcp.interface; neither: off). */
    interface: z.string().default(''),
    /** The ra-responder helper ('' = beside the bundle, dist/ra-responder or /opt/netboot/ra-responder). */
    helper: z.string().default(''),
    /** After start, answer nobody this long while listening for other routers (they answer our RS within 0.5 s). */
    probeSeconds: z.number().min(0).max(60).default(2),
    /** Another router counts as present this long after its last RA (RFC 4861 §6.2.1: MaxRtrAdvInterval is at most 1800 s). */
    routerHoldSeconds: z.number().int().min(1).max(86400).default(1800),
  }).prefault({}),
  images: strict({
    /**
     * Directories a server-side import (`POST /api/images {path}`) may read from, besides
     * `<dataDir>/import` ('' entries ignored). Paths are checked after realpath.
     */
    importDirs: z.array(z.string().min(1)).default([]),
  }).prefault({}),
  mdns: strict({
    enabled: z.boolean().default(true),
    name: z
      .string()
      .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i, 'must be a DNS label')
      .default('netboot'),
  }).prefault({}),
  store: strict({
    /** Size of each preallocated segment file (FAT32 caps files at 4 GiB). */
    segmentMiB: z.number().int().min(1).max(4095).default(256),
    /** Copy-on-write granularity. */
    chunkKiB: z.number().int().min(4).max(4096).default(64),
    /** Space left free on the filesystem for everything else. */
    reserveMiB: z.number().int().min(0).default(256),
    /** Most space held unwritten in layout reservations, all disks together (image-store/README.md, "Layout"). */
    reservationMiB: z.number().int().min(0).default(1024),
    /**
     * Where client disks live: "local" (the copy-on-write store under dataDir/store) or "rbd"
     * (Ceph RBD, `store.rbd`; docs/rbd.md). The segment/chunk keys above apply to "local" only.
     */
    backend: z.enum(['local', 'rbd']).default('local'),
    /** The Ceph cluster, for backend "rbd": checked at start (the pool is listed as that user). */
    rbd: strict({
      pool: z.string().regex(/^[A-Za-z0-9._-]{1,128}$/, 'must be a pool name'),
      /** ceph.conf naming the monitors. */
      conf: z.string().min(1).default('/etc/ceph/ceph.conf'),
      /** cephx user without "client.", with `profile rbd pool=<pool>` (docs/rbd.md). */
      user: z
        .string()
        .regex(/^[A-Za-z0-9._-]{1,64}$/, 'a cephx name without "client."')
        .default('netboot'),
      /** Keyring with that user's key (default: /etc/ceph/ceph.client.<user>.keyring, as ceph.conf finds it). */
      keyring: z.string().min(1).optional(),
      /** Prefix of the RBD images the appliance makes, so a pool can be shared. */
      prefix: z
        .string()
        .regex(/^[A-Za-z0-9._-]{0,32}$/)
        .default('netboot-'),
    }).optional(),
  })
    .prefault({})
    .refine((s) => s.backend !== 'rbd' || s.rbd !== undefined, { message: 'store.backend "rbd" needs store.rbd (pool, conf, user, keyring)', path: ['rbd'] }),
});

export type Config = z.infer<typeof configSchema>;

/** A config that failed validation: every problem, each with the key's path. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

/** Validates a parsed JSON value; throws ConfigError listing every problem. */
export function parseConfig(raw: unknown): Readonly<Config> {
  const result = configSchema.safeParse(raw ?? {});
  if (!result.success) {
    throw new ConfigError(result.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`));
  }
  const cfg = result.data;
  if (cfg.dhcp.mode === 'full' && cfg.dhcp.range.length === 0) {
    throw new ConfigError(['dhcp.range: full mode needs [first, last] addresses to hand out']);
  }
  if (cfg.boot.unknownClients === 'enroll' && !cfg.boot.enrollImage) {
    throw new ConfigError(['boot.enrollImage: unknownClients "enroll" needs the golden image to clone']);
  }
  return deepFreeze(cfg);
}

/** Reads and validates a JSON config file ('' = embedded defaults). */
export function loadConfig(file: string | undefined): Readonly<Config> {
  if (!file) return parseConfig({});
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? err})`]);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError([`${file}: not valid JSON (${(err as Error).message})`]);
  }
  return parseConfig(raw);
}
