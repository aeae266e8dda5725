import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type Database, openDatabase } from "../src/db/client.ts";
import { DataDirInUseError, LOCK_FILE } from "../src/db/data-dir-lock.ts";
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
async function open(): Promise<Database> {
  const database = await openDatabase({
    dataDir,
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
