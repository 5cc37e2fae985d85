import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Config } from '../core/config';
import { importDirs, isInImportDir } from '../images/import-paths';
import { ApiClient, CliError } from './api-client';
import { bytes, table } from './format';

/** A CLI verb that talks to the running service. */
export interface Verb {
  name: string;
  usage: string;
  summary: string;
  run(args: string[], config: Readonly<Config>, flags: { json: boolean }): Promise<void>;
}

const print = (json: boolean, value: unknown, human: () => string) => {
  process.stdout.write((json ? JSON.stringify(value, null, 2) : human()) + '\n');
};

function need(args: string[], n: number, usage: string): void {
  if (args.length < n) throw new CliError(`usage: appliance ${usage}`, 2);
}

interface Status {
  version: string;
  uptimeSeconds: number;
  serverAddress: string;
  services: { name: string; state: string; listen: string[]; detail?: string }[];
  storage: { dataDir: string; filesystem: { totalBytes: number; availableBytes: number } };
}

const status: Verb = {
  name: 'status',
  usage: 'status [--json]',
  summary: 'show the running service: version, uptime, services, storage',
  async run(_args, config, { json }) {
    const s = await new ApiClient(config).call<Status>('GET', '/api/status');
    print(json, s, () =>
      [
        `netboot appliance ${s.version}, up ${s.uptimeSeconds}s, clients reach it at ${s.serverAddress}`,
        table(
          s.services.map((x) => ({ service: x.name, state: x.state, listen: x.listen.join(', '), detail: x.detail })),
          ['service', 'state', 'listen', 'detail'],
        ),
        `data: ${s.storage.dataDir} (${bytes(s.storage.filesystem.availableBytes)} free of ${bytes(s.storage.filesystem.totalBytes)})`,
      ].join('\n'),
    );
  },
};

const image: Verb = {
  name: 'image',
  usage: 'image list | import NAME FILE | rm NAME',
  summary: 'golden images: list, import a disk image file (read in place from an import directory, else uploaded), delete',
  async run(args, config, { json }) {
    const api = new ApiClient(config);
    const [sub, ...rest] = args;
    if (!sub || sub === 'list') {
      const list = await api.call<{ images: Record<string, unknown>[] }>('GET', '/api/images');
      return print(json, list, () =>
        table(
          list.images.map((i) => ({ ...i, size: bytes(Number(i.sizeBytes ?? 0)) })),
          ['name', 'size', 'state', 'createdAt'],
        ),
      );
    }
    if (sub === 'import') {
      need(rest, 2, this.usage);
      const [name, file] = [rest[0], resolve(rest[1])];
      // The service reads files in place only inside its import directories (issue #13); any
      // other file is streamed to it, so the verb works wherever the file is.
      const inPlace = isInImportDir(file, importDirs(resolve(config.dataDir), config.images.importDirs));
      if (!inPlace && !existsSync(file)) throw new CliError(`no file at ${file}`);
      const res = inPlace
        ? await api.call('POST', '/api/images', { name, path: file })
        : await api.upload(`/api/images/${encodeURIComponent(name)}/upload`, file);
      return print(json, res, () => `importing ${name} from ${file}${inPlace ? '' : ' (uploaded)'}: \`image list\` shows when it is ready`);
    }
    if (sub === 'rm') {
      need(rest, 1, this.usage);
      await api.call('DELETE', `/api/images/${encodeURIComponent(rest[0])}`);
      return print(json, { deleted: rest[0] }, () => `deleted ${rest[0]}`);
    }
    throw new CliError(`usage: appliance ${this.usage}`, 2);
  },
};

const client: Verb = {
  name: 'client',
  usage:
    'client list | add MAC IMAGE [NAME] | show MAC | rm MAC | disks MAC | next-boot MAC (image|disk|rescue) NAME | next-boot MAC clear | road MAC (auto|ipxe|grub) | move MAC NEWMAC [copy]',
  summary: 'clients: each MAC boots its own copy-on-write disk of a golden image',
  async run(args, config, { json }) {
    const api = new ApiClient(config);
    const [sub, ...rest] = args;
    if (!sub || sub === 'list') {
      const list = await api.call<{ clients: Record<string, unknown>[] }>('GET', '/api/clients');
      return print(json, list, () => table(list.clients, ['mac', 'name', 'image', 'target']));
    }
    if (sub === 'add') {
      need(rest, 2, this.usage);
      const c = await api.call<Record<string, unknown>>('POST', '/api/clients', { mac: rest[0], image: rest[1], ...(rest[2] ? { name: rest[2] } : {}) });
      return print(json, c, () => `added ${c.mac}: target ${c.target}, initiator ${c.initiatorName}`);
    }
    if (sub === 'show') {
      need(rest, 1, this.usage);
      const c = await api.call<Record<string, unknown>>('GET', `/api/clients/${encodeURIComponent(rest[0])}`);
      return print(json, c, () =>
        Object.entries(c)
          .map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`)
          .join('\n'),
      );
    }
    if (sub === 'rm') {
      need(rest, 1, this.usage);
      await api.call('DELETE', `/api/clients/${encodeURIComponent(rest[0])}`);
      return print(json, { deleted: rest[0] }, () => `deleted ${rest[0]} and its disk`);
    }
    const mac = encodeURIComponent(rest[0] ?? '');
    if (sub === 'disks') {
      need(rest, 1, this.usage);
      const d = await api.call<{ bootDisk: string; disks: Record<string, unknown>[] }>('GET', `/api/clients/${mac}/disks`);
      return print(json, d, () =>
        table(
          d.disks.map((x) => ({ ...x, boot: x.name === d.bootDisk ? '*' : '' })),
          ['boot', 'name', 'image', 'target', 'inUse'],
        ),
      );
    }
    if (sub === 'next-boot') {
      need(rest, 2, this.usage);
      if (rest[1] === 'clear') {
        await api.call('DELETE', `/api/clients/${mac}/next-boot`);
        return print(json, { nextBoot: null }, () => 'next boot: the default disk');
      }
      need(rest, 3, this.usage);
      if (!['image', 'disk', 'rescue'].includes(rest[1])) throw new CliError(`usage: appliance ${this.usage}`, 2);
      const r = await api.call<{ nextBoot: unknown }>('PUT', `/api/clients/${mac}/next-boot`, { [rest[1]]: rest[2] });
      return print(json, r, () => `next boot of ${rest[0]}: ${rest[1]} ${rest[2]} (once)`);
    }
    if (sub === 'road') {
      need(rest, 2, this.usage);
      if (!['auto', 'ipxe', 'grub'].includes(rest[1])) throw new CliError(`usage: appliance ${this.usage}`, 2);
      const r = await api.call<{ road: string }>('PATCH', `/api/clients/${mac}`, { road: rest[1] });
      return print(json, r, () => `boot road of ${rest[0]}: ${r.road} (docs/boot-roads.md)`);
    }
    if (sub === 'move') {
      need(rest, 2, this.usage);
      const r = await api.call<Record<string, unknown>>('POST', `/api/clients/${mac}/move`, { to: rest[1], copy: rest[2] === 'copy' });
      return print(json, r, () => `${rest[2] === 'copy' ? 'copied' : 'moved'} the disk of ${rest[0]} to ${r.mac} (target ${r.target})`);
    }
    throw new CliError(`usage: appliance ${this.usage}`, 2);
  },
};

const snapshot: Verb = {
  name: 'snapshot',
  usage: 'snapshot create MAC NAME | list MAC | restore MAC ID | rm MAC ID | schedule MAC MINUTES KEEP | schedule MAC off',
  summary: "a client disk's snapshots: instant create, restore, delete",
  async run(args, config, { json }) {
    const api = new ApiClient(config);
    const [sub, mac, arg] = args;
    if (!sub || !mac) throw new CliError(`usage: appliance ${this.usage}`, 2);
    const base = `/api/clients/${encodeURIComponent(mac)}/snapshots`;
    if (sub === 'list') {
      const list = await api.call<{ snapshots: Record<string, unknown>[] }>('GET', base);
      return print(json, list, () => table(list.snapshots, ['id', 'name', 'createdAt']));
    }
    if (!arg) throw new CliError(`usage: appliance ${this.usage}`, 2);
    if (sub === 'schedule') {
      if (arg === 'off') {
        await api.call('DELETE', `/api/clients/${encodeURIComponent(mac)}/schedule`);
        return print(json, { schedule: null }, () => `no scheduled snapshots for ${mac}`);
      }
      const keep = Number(args[3]);
      const r = await api.call('PUT', `/api/clients/${encodeURIComponent(mac)}/schedule`, { everyMinutes: Number(arg), keep });
      return print(json, r, () => `${mac}: a snapshot every ${arg} minutes, keeping ${keep}`);
    }
    if (sub === 'create') {
      const s = await api.call<Record<string, unknown>>('POST', base, { name: arg });
      return print(json, s, () => `snapshot ${s.id} "${s.name}" taken`);
    }
    if (sub === 'restore') {
      const r = await api.call('POST', `${base}/${encodeURIComponent(arg)}/restore`);
      return print(json, r, () => `restored ${mac} to snapshot ${arg}`);
    }
    if (sub === 'rm') {
      await api.call('DELETE', `${base}/${encodeURIComponent(arg)}`);
      return print(json, { deleted: arg }, () => `deleted snapshot ${arg}`);
    }
    throw new CliError(`usage: appliance ${this.usage}`, 2);
  },
};

/** Verbs that talk to the running service, in the order --help lists them. */
export const apiVerbs: Verb[] = [status, image, client, snapshot];
