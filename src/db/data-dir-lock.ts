import { closeSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from "node:fs";
import path from "node:path";

/**
 * The embedded database (PGlite) takes no lock of its own: a second process opening the same
 * folder works on a copy in its memory and its changes are lost, or worse, overwrite the first's.
 * So whoever opens a DATA_DIR on disk first creates this file, holding its pid, and a second opener
 * is refused while that process lives.
 */
export const LOCK_FILE = "database.lock";

/** Lock files this process holds (a second open in the same process is refused too). */
const held = new Set<string>();

/** How long a lock file may hold no pid before it counts as left by an opener that died creating it. */
const UNWRITTEN_GRACE_MS = 5_000;

export class DataDirInUseError extends Error {
  constructor(
    readonly lockFile: string,
    readonly holderPid?: number,
  ) {
    super(
      `the embedded database in ${path.dirname(lockFile)} is in use by ` +
        (holderPid === undefined
          ? "a process opening it now"
          : `process ${holderPid}${holderPid === process.pid ? " (this one)" : ""}`) +
        `; if no Tandao app or CLI is running on it, delete ${lockFile}`,
    );
    this.name = "DataDirInUseError";
  }
}

export interface DataDirLock {
  /** Removes the lock file (once; later calls do nothing). */
  release(): void;
}

/** Takes the lock on `dataDir` (which must exist), or throws `DataDirInUseError`. */
export function lockDataDir(dataDir: string): DataDirLock {
  const file = path.resolve(dataDir, LOCK_FILE);
  const mine = `${process.pid}\n${bootId}\n`;
  // Bounded: each turn either creates the file or removes a stale one another opener may race for.
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(file, "wx");
      try {
        writeSync(fd, mine);
      } finally {
        closeSync(fd);
      }
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      if (attempt >= 3) throw new DataDirInUseError(file, holderOf(file));
    }
    const holder = holderOf(file);
    if (holder === undefined) {
      // No pid yet: another opener created it an instant ago and is writing it, unless it died then.
      if (Date.now() - mtimeOf(file) < UNWRITTEN_GRACE_MS) throw new DataDirInUseError(file);
    } else if (held.has(file) || (holder !== process.pid && isAlive(holder) && !fromAnotherBoot(file)))
      throw new DataDirInUseError(file, holder);
    // Left by a process that died without releasing it (killed, or the machine stopped): take it
    // over. Its own pid in a file it does not hold was left by an earlier run (a container restarts
    // with the same pid); a live pid written before the machine last started is another process's
    // now (after a power cut, the lock's pid may well be taken again).
    removeIfHeldBy(file, holder);
  }
  held.add(file);
  // A process that exits without closing the database (an error, process.exit) frees it too.
  const onExit = () => removeIfHeldBy(file, process.pid);
  process.on("exit", onExit);
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      process.off("exit", onExit);
      held.delete(file);
      removeIfHeldBy(file, process.pid);
    },
  };
}

/** This boot of the machine (Linux); "" where the kernel does not say. */
const bootId = (() => {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return "";
  }
})();

/** The lock was written before the machine last started: its process is gone, whatever holds its pid now. */
function fromAnotherBoot(file: string): boolean {
  try {
    const written = readFileSync(file, "utf8").split("\n")[1]?.trim() ?? "";
    return bootId !== "" && written !== "" && written !== bootId;
  } catch {
    return false;
  }
}

function holderOf(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, "utf8").split("\n")[0]!.trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function mtimeOf(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

function removeIfHeldBy(file: string, pid: number | undefined) {
  if (holderOf(file) !== pid) return;
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
