/**
 * A process's memory and CPU as /proc reports them, for the benches that put our target or the
 * appliance next to a peer daemon (tgtd): RSS now and at its peak, RSS split into anonymous
 * memory and mapped files, CPU seconds, and a sampler of the RSS peak over a stretch of load.
 */
import { readFileSync } from 'node:fs';

const CLK_TCK = 100;

/** VmRSS and VmHWM (the peak) in MiB; NaN once the process is gone. */
export function rss(pid: number): { rss: number; hwm: number } {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? 0);
    return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
  } catch {
    return { rss: NaN, hwm: NaN };
  }
}

/** VmRSS split into anonymous memory and mapped files (the node binary's pages count as RSS too). */
export function rssKinds(pid: number): string {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const mib = (k: string) => (Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? 0) / 1024).toFixed(0);
    return `RSS ${mib('VmRSS')} MiB (anon ${mib('RssAnon')}, file ${mib('RssFile')})`;
  } catch {
    return 'gone';
  }
}

/**
 * The fields of /proc/<pid>/stat after the command name (which may hold spaces): index 0 is
 * field 3 (state) of proc(5), so field n is at n - 3.
 */
function statFields(pid: number): string[] {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return f.slice(f.lastIndexOf(')') + 2).split(' ');
}

/** CPU seconds (user + system, all threads) the process has used: utime and stime, fields 14 and 15. */
export function cpuSeconds(pid: number): number {
  const fields = statFields(pid);
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/**
 * Minor page faults of the process so far (all threads; minflt, field 10): memory it touched that
 * was not mapped, e.g. an allocator's pages handed back to the kernel and faulted in again. A
 * count, so it does not move with the neighbours' load as CPU time does.
 */
export function minorFaults(pid: number): number {
  return Number(statFields(pid)[7]);
}

/** Samples VmRSS of the given processes every 200 ms; stop() returns each one's maximum. */
export function sampleRss(pids: number[]): { stop: () => number[] } {
  const max = pids.map(() => 0);
  const t = setInterval(() => pids.forEach((p, i) => (max[i] = Math.max(max[i]!, rss(p).rss || 0))), 200);
  return {
    stop: () => {
      clearInterval(t);
      pids.forEach((p, i) => (max[i] = Math.max(max[i]!, rss(p).rss || 0)));
      return max;
    },
  };
}

/**
 * RSS by mapping, in MiB: the node binary's own pages (its code and read-only data, ICU's
 * included), shared libraries and addons, the main malloc arena ([heap]), and the rest of the
 * anonymous memory (V8's heap, other malloc arenas, thread stacks).
 */
export function rssByMapping(pid: number): string {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/smaps`, 'utf8');
  } catch {
    return 'gone';
  }
  const kb: Record<string, number> = { binary: 0, libs: 0, heap: 0, anon: 0, other: 0 };
  let kind = 'anon';
  for (const line of text.split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      const name = head[1]!;
      kind =
        name === ''
          ? 'anon'
          : name === '[heap]'
            ? 'heap'
            : /\/node$/.test(name)
              ? 'binary'
              : /\.so|\.node$/.test(name)
                ? 'libs'
                : name.startsWith('[')
                  ? 'anon'
                  : 'other';
    } else if (line.startsWith('Rss:')) {
      kb[kind]! += Number(line.split(/\s+/)[1]);
    }
  }
  const m = (k: string) => (kb[k]! / 1024).toFixed(1);
  return `node binary ${m('binary')}, libs ${m('libs')}, malloc [heap] ${m('heap')}, other anon ${m('anon')}, other files ${m('other')}`;
}
