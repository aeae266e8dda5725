import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process";
import {
  existsSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { hostname, tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { FakeClock } from "../src/clock.ts";
import { type Database, openDatabase } from "../src/db/client.ts";
import { DataDirInUseError, LOCK_FILE, lockDataDir } from "../src/db/data-dir-lock.ts";
import { hasEmbeddedDatabase, seedEmbeddedDatabase } from "../src/db/embedded-template.ts";

/**
 * The embedded database in a DATA_DIR on disk is opened by one process at a time: PGlite takes no
 * lock, and a second process (the CLI beside the running app) would write to a copy that is lost.
 */

const exec = promisify(execFile);
let dataDir: string;
const opened: Database[] = [];
const children: ChildProcess[] = [];

/** Opens DATA_DIR as the app does (a new one starts from the install's migrated copy). */
async function open(clock?: FakeClock): Promise<Database> {
  const database = await openDatabase({
    dataDir,
    ...(clock ? { lock: { clock } } : {}),
    beforeOpen: (dir) => {
      if (!hasEmbeddedDatabase(dir)) seedEmbeddedDatabase(dir);
    },
  });
  opened.push(database);
  return database;
}

/** The pid the lock file names (its first line). */
const lockHolder = () => readFileSync(path.join(dataDir, LOCK_FILE), "utf8").split("\n")[0];

async function close(database: Database) {
  opened.splice(opened.indexOf(database), 1);
  await database.close();
}

/** `npm run cli -- <args>` on DATA_DIR: its exit code and what it printed. */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...process.env, DATA_DIR: dataDir, DATABASE_URL: "", TANDAO_MODE: "" };
  return exec(process.execPath, ["bin/tandao.mjs", ...args], { env }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => error,
  );
}

/** Another process that opens DATA_DIR; resolves once it has it open. */
function holder(then: "stay" | "exit"): Promise<ChildProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", "test/support/hold-data-dir.ts", dataDir, then], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let output = "";
  return new Promise((resolve, reject) => {
    child.stdout!.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes("opened")) resolve(child);
    });
    child.stderr!.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.on("exit", () => {
      if (!output.includes("opened")) reject(new Error(`the other process did not open it:\n${output}`));
    });
  });
}

const exited = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });

beforeAll(async () => {
  dataDir = mkdtempSync(path.join(tmpdir(), "tandao-lock-"));
  // Made once, so each opener below finds a migrated database.
  const database = await open();
  await database.migrate();
  await close(database);
});
afterEach(async () => {
  for (const database of opened.splice(0)) await database.close();
  for (const child of children.splice(0)) {
    child.kill("SIGKILL");
    await exited(child);
  }
});
afterAll(() => {
  rmSync(dataDir, { recursive: true, force: true });
});

describe("the embedded database in a DATA_DIR", () => {
  it("refuses a second opener (the CLI beside the app) while the first has it open, and lets it in once closed", async () => {
    const app = await open();
    await expect(openDatabase({ dataDir })).rejects.toThrow(DataDirInUseError);
    const refused = await cli(["plans", "list"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`in use by process ${process.pid}`);
    expect(refused.stderr).toContain("Is the app running on the embedded database? Stop it first.");

    await close(app);
    expect(existsSync(path.join(dataDir, LOCK_FILE))).toBe(false);
    const letIn = await cli(["plans", "list"]);
    expect(letIn.code, letIn.stderr).toBe(0);
  }, 60_000);

  it("is taken over from a process that was killed with it open", async () => {
    const other = await holder("stay");
    await expect(openDatabase({ dataDir })).rejects.toThrow(`in use by process ${other.pid}`);
    other.kill("SIGKILL");
    await exited(other);
    // The killed process could not remove its lock: it still names it.
    expect(lockHolder()).toBe(String(other.pid));

    const database = await open();
    await database.migrate();
    expect(lockHolder()).toBe(String(process.pid));
  }, 60_000);

  it("is taken over when written before the machine last started, though its pid is alive again", async () => {
    const bootId = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    // A live process that is not this one: what a crash's pid may be after a reboot.
    const live = process.ppid;
    writeFileSync(path.join(dataDir, LOCK_FILE), `${live}\n${bootId}\n`);
    await expect(openDatabase({ dataDir })).rejects.toThrow(`in use by process ${live}`);

    writeFileSync(path.join(dataDir, LOCK_FILE), `${live}\nan-earlier-boot\n`);
    await open();
    expect(lockHolder()).toBe(String(process.pid));
  }, 60_000);

  it("is freed by a process that exits without closing it", async () => {
    const other = await holder("exit");
    await exited(other);
    expect(existsSync(path.join(dataDir, LOCK_FILE))).toBe(false);
    await open();
  }, 60_000);
});

describe("the lock shared with another host or container (one DATA_DIR volume)", () => {
  const bootId = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  const lockFile = () => path.join(dataDir, LOCK_FILE);
  /** A lock as a holder elsewhere writes it, its heartbeat last touched `silentS` seconds before `clock`. */
  function foreignLock(clock: FakeClock, lines: string[], silentS: number) {
    writeFileSync(lockFile(), `${lines.join("\n")}\n`);
    const beat = new Date(clock.now().getTime() - silentS * 1000);
    utimesSync(lockFile(), beat, beat);
  }

  it("is not taken from a live holder in another container or on another host while its heartbeat is fresh, and is once it has been silent", async () => {
    const clock = new FakeClock("2026-06-01T06:00:00Z");
    // A pid that lived here once and is gone: says nothing about a process on another machine.
    const gone = spawnSync(process.execPath, ["-e", ""]).pid;
    const holders = [
      // Another container on this machine: its app is the same pid as this one, in its own namespace.
      {
        lines: [String(process.pid), bootId, "tandao-a", "pid:[4026532999]"],
        says: `in use by process ${process.pid} on host tandao-a, last heard from 20 s ago`,
      },
      {
        lines: [String(process.pid), bootId, hostname(), "pid:[4026532999]"],
        says: `in use by process ${process.pid} in another pid namespace (container) on ${hostname()}`,
      },
      // Another machine, where that pid is its app's.
      {
        lines: [String(gone), "another-machines-boot", "tandao-b", "pid:[4026531836]"],
        says: `in use by process ${gone} on host tandao-b, last heard from 20 s ago`,
      },
    ];
    for (const holder of holders) {
      foreignLock(clock, holder.lines, 20);
      const refused = openDatabase({ dataDir, lock: { clock } });
      await expect(refused).rejects.toThrow(DataDirInUseError);
      await expect(refused).rejects.toThrow(holder.says);
      expect(readFileSync(lockFile(), "utf8")).toBe(`${holder.lines.join("\n")}\n`);

      // Silent for longer than several heartbeats: its holder is gone (killed, or its machine stopped).
      foreignLock(clock, holder.lines, 5 * 60);
      await close(await open(clock));
    }
  }, 60_000);

  it("is taken at once from a dead process on this host and boot, whatever its heartbeat", async () => {
    const clock = new FakeClock("2026-06-01T06:00:00Z");
    const gone = spawnSync(process.execPath, ["-e", ""]).pid;
    foreignLock(clock, [String(gone), bootId, hostname(), readlinkSync("/proc/self/ns/pid")], 0);
    await open(clock);
    expect(lockHolder()).toBe(String(process.pid));
  }, 60_000);

  it("is kept by its holder's heartbeat while it runs, and the heartbeat stops when it is released", () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    try {
      const clock = new FakeClock("2026-06-01T06:00:00Z");
      const lock = lockDataDir(dataDir, { clock, heartbeatMs: 10_000 });
      // What an opener elsewhere judges the holder by: the file's modification time.
      const heard = () => Math.round(statSync(lockFile()).mtimeMs);
      expect(heard()).toBe(clock.now().getTime());
      clock.advance(10 * 60_000);
      vi.advanceTimersByTime(10_000);
      expect(heard()).toBe(clock.now().getTime());

      lock.release();
      expect(existsSync(lockFile())).toBe(false);
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it("tells its holder when an opener elsewhere took it over while the holder was stalled, once", () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    try {
      const clock = new FakeClock("2026-06-01T06:00:00Z");
      const lost: string[] = [];
      const lock = lockDataDir(dataDir, { clock, heartbeatMs: 10_000, onLost: (by) => lost.push(by) });
      vi.advanceTimersByTime(10_000);
      expect(lost).toEqual([]);
      // Stopped for minutes (a paused container): the opener in the other one judged it silent.
      const other = ["4242", "another-machines-boot", "tandao-b", "pid:[4026531836]"];
      writeFileSync(lockFile(), `${other.join("\n")}\n`);
      vi.advanceTimersByTime(30_000);
      expect(lost).toEqual(["process 4242 on host tandao-b"]);
      lock.release();
      expect(readFileSync(lockFile(), "utf8")).toBe(`${other.join("\n")}\n`);
      rmSync(lockFile());
    } finally {
      vi.useRealTimers();
    }
  });

  it("does not keep a finished CLI run alive: a process holding it exits on its own and frees it", async () => {
    const child = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        "--input-type=module",
        "-e",
        `import { lockDataDir } from "./src/db/data-dir-lock.ts"; lockDataDir(${JSON.stringify(dataDir)}); console.log("locked");`,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    children.push(child);
    let output = "";
    child.stdout!.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr!.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    await exited(child);
    expect(output).toContain("locked");
    expect(child.exitCode).toBe(0);
    expect(existsSync(lockFile())).toBe(false);
  }, 60_000);
});
