import {
  closeSync,
  openSync,
  readFileSync,
  readlinkSync,
  statSync,
  unlinkSync,
  utimesSync,
  writeSync,
} from "node:fs";
import { hostname } from "node:os";
import path from "node:path";
import { type Clock, systemClock } from "../clock.ts";

/**
 * The embedded database (PGlite) takes no lock of its own: a second process opening the same
 * folder works on a copy in its memory and its changes are lost, or worse, overwrite the first's.
 * So whoever opens a DATA_DIR on disk first creates this file, naming its pid and where that pid
 * means something (boot, host, pid namespace), and a second opener is refused while it runs.
 *
 * A pid can only be asked about from the same machine and pid namespace: two containers sharing a
 * DATA_DIR volume, each its own pid 1, cannot tell whether the other lives. So the holder also
 * touches the file's modification time every `heartbeatMs` while it runs, and a lock written
 * elsewhere is judged by that heartbeat alone: stale once it has been silent for `staleAfterMs`.
 */
export const LOCK_FILE = "database.lock";

/** Lock files this process holds (a second open in the same process is refused too). */
const held = new Set<string>();

/** How long a lock file may hold no pid before it counts as left by an opener that died creating it. */
const UNWRITTEN_GRACE_MS = 5_000;
const HEARTBEAT_MS = 10_000;
/** Several beats, so that a busy event loop or a slow shared disk does not lose a live holder its lock. */
const STALE_AFTER_BEATS = 6;

/** What a lock file says about its holder. */
interface Holder {
  pid: number;
  boot: string;
  /** Absent in a lock written before locks named their host: judged by pid and boot alone. */
  host?: string;
  pidNamespace?: string;
}

export class DataDirInUseError extends Error {
  constructor(
    readonly lockFile: string,
    readonly holderPid?: number,
    /** Where the holder runs, when that is not here (another host or container). */
    readonly holderPlace?: string,
  ) {
    super(
      `the embedded database in ${path.dirname(lockFile)} is in use by ` +
        (holderPid === undefined
          ? "a process opening it now"
          : `process ${holderPid}` +
            (holderPlace ? ` ${holderPlace}` : holderPid === process.pid ? " (this one)" : "")) +
        `; if no Tandao app or CLI is running on it, delete ${lockFile}`,
    );
    this.name = "DataDirInUseError";
  }
}

export interface DataDirLock {
  /** Removes the lock file and stops its heartbeat (once; later calls do nothing). */
  release(): void;
}

export interface DataDirLockOptions {
  /** The time the heartbeat is written and judged by. */
  clock?: Clock;
  heartbeatMs?: number;
  /**
   * Called once when the lock is found naming another opener: this process was stopped or stalled
   * for longer than a holder elsewhere waits, and that opener took the folder over. Writing on would
   * be two processes on one database, so the app stops.
   */
  onLost?: (holder: string) => void;
}

/** Takes the lock on `dataDir` (which must exist), or throws `DataDirInUseError`. */
export function lockDataDir(dataDir: string, options: DataDirLockOptions = {}): DataDirLock {
  const clock = options.clock ?? systemClock;
  const heartbeatMs = options.heartbeatMs ?? HEARTBEAT_MS;
  const file = path.resolve(dataDir, LOCK_FILE);
  const mine = `${process.pid}\n${here.boot}\n${here.host}\n${here.pidNamespace}\n`;
  // Bounded: each turn either creates the file or removes a stale one another opener may race for.
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(file, "wx");
      try {
        writeSync(fd, mine);
      } finally {
        closeSync(fd);
      }
      touch(file, clock);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      if (attempt >= 3) throw inUse(file, read(file)?.holder, clock);
    }
    const found = read(file);
    const silentMs = clock.now().getTime() - mtimeOf(file);
    if (!found?.holder) {
      // No pid yet: another opener created it an instant ago and is writing it, unless it died then.
      if (silentMs < UNWRITTEN_GRACE_MS) throw new DataDirInUseError(file);
    } else if (held.has(file) || !isStale(found.holder, silentMs, heartbeatMs * STALE_AFTER_BEATS))
      throw inUse(file, found.holder, clock);
    removeIfReads(file, found?.text);
  }
  held.add(file);
  // Unref'd: the heartbeat alone must not keep a finished CLI run alive.
  const heartbeat = setInterval(() => {
    const found = read(file);
    if (found?.text === mine) touch(file, clock);
    else if (found?.holder) {
      // Not refreshed once it names someone else: an opener elsewhere took it over while this
      // process was stopped, and a heartbeat must not make that opener's lock look like ours.
      clearInterval(heartbeat);
      const place = placeOf(found.holder);
      options.onLost?.(`process ${found.holder.pid}${place ? ` ${place}` : ""}`);
    }
  }, heartbeatMs).unref();
  // A process that exits without closing the database (an error, process.exit) frees it too.
  const onExit = () => removeIfReads(file, mine);
  process.on("exit", onExit);
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      clearInterval(heartbeat);
      process.off("exit", onExit);
      held.delete(file);
      removeIfReads(file, mine);
    },
  };
}

/**
 * Left by a process that died without releasing it (killed, or the machine stopped)? Here (this
 * boot, host and pid namespace) the pid says so at once: dead, or this process's own pid in a file
 * it does not hold (an earlier run). Elsewhere, only a heartbeat silent for `staleAfterMs` does.
 */
function isStale(holder: Holder, silentMs: number, staleAfterMs: number): boolean {
  if (holder.host === undefined) {
    // Written by a version that named no host: a live pid written before the machine last started
    // is another process's now (after a power cut, the lock's pid may well be taken again).
    return (
      holder.pid === process.pid ||
      !isAlive(holder.pid) ||
      (here.boot !== "" && holder.boot !== "" && holder.boot !== here.boot)
    );
  }
  if (placeOf(holder) === undefined) return holder.pid === process.pid || !isAlive(holder.pid);
  return silentMs > staleAfterMs;
}

/** Where the holder runs, said for the refusal; undefined when that is here. */
function placeOf(holder: Holder): string | undefined {
  if (holder.host === undefined) return undefined;
  if (holder.host !== here.host) return `on host ${holder.host || "(unnamed)"}`;
  if (holder.pidNamespace !== here.pidNamespace)
    return `in another pid namespace (container) on ${holder.host}`;
  if (holder.boot !== here.boot) return `on ${holder.host} before it last started`;
  return undefined;
}

function inUse(file: string, holder: Holder | undefined, clock: Clock): DataDirInUseError {
  if (!holder) return new DataDirInUseError(file);
  const place = placeOf(holder);
  const silentS = Math.max(0, Math.round((clock.now().getTime() - mtimeOf(file)) / 1000));
  return new DataDirInUseError(file, holder.pid, place && `${place}, last heard from ${silentS} s ago`);
}

/** Where this process's pid means something. Each part is "" where the system does not say. */
const here = {
  boot: readOr("", () => readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim()),
  host: readOr("", () => hostname()),
  pidNamespace: readOr("", () => readlinkSync("/proc/self/ns/pid")),
};

function readOr(fallback: string, value: () => string): string {
  try {
    return value();
  } catch {
    return fallback;
  }
}

function read(file: string): { text: string; holder?: Holder } | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
  const [pidLine = "", boot = "", host, pidNamespace] = text.split("\n").map((line) => line.trim());
  const pid = Number(pidLine);
  if (!(pidLine !== "" && Number.isSafeInteger(pid) && pid > 0)) return { text };
  // A lock with a host line is the current format; an empty one is still a host nobody named.
  const current = host !== undefined && pidNamespace !== undefined;
  return { text, holder: current ? { pid, boot, host, pidNamespace } : { pid, boot } };
}

function touch(file: string, clock: Clock) {
  const now = clock.now();
  try {
    utimesSync(file, now, now);
  } catch {
    // A missed beat is retried at the next; only several in a row let the lock go.
  }
}

function mtimeOf(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

/** Removes the lock if it still says `text`: never one another opener has written since. */
function removeIfReads(file: string, text: string | undefined) {
  if (read(file)?.text !== text) return;
  try {
    unlinkSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: alive, but another user's.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
