import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { networkInterfaces, tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/**
 * The process as operators run it: `npm start` (which execs node), stopped by SIGTERM sent to the
 * PID that was started. The HTTP port must be free and the stop logged within 5 s, and the log says
 * which address was really bound. Each run uses an embedded database in a temp DATA_DIR of its own.
 */

const root = path.resolve(import.meta.dirname, "..");
/** The sandbox's fakes on ports of their own choosing: other tests (or a developer's app) may hold the defaults. */
const noFixedPorts = { WHATSAPP_SANDBOX_PORT: "0", TELEGRAM_ADMIN_SANDBOX_PORT: "0" };
const startMs = 90_000;

/** Settings from the environment running the tests that would change what is started. */
function isConfigKey(key: string): boolean {
  return (
    /^(MPESA_|AT_|USSD_|STK_|TELEGRAM_|WHATSAPP_|PORTAL_)/.test(key) ||
    [
      "TANDAO_MODE",
      "HOST",
      "TRUST_PROXY",
      "DATABASE_URL",
      "PUBLIC_URL",
      "SECRET_KEY",
      "PORT",
      "DATA_DIR",
    ].includes(key)
  );
}

/** Whether a TCP connection to host:port is accepted (true) or refused or reset (false). */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    socket.setTimeout(2_000, () => {
      socket.destroy();
      reject(new Error(`no answer from ${host}:${port} (neither accepted nor refused)`));
    });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", (error: NodeJS.ErrnoException) => {
      // Reset: the kernel took the connection into a listening socket that was closing meanwhile
      // (the app stopping): it is not accepted either.
      if (error.code === "ECONNREFUSED" || error.code === "ECONNRESET") resolve(false);
      else reject(error);
    });
  });
}

/** Polls `check` until it holds or `timeoutMs` passes; returns whether it held. */
async function within(timeoutMs: number, check: () => boolean | Promise<boolean>): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
}

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

interface Started {
  child: ChildProcess;
  /** The port the app said it listens on, once it did (it is started with PORT=0). */
  port: number;
  lines: LogLine[];
  output(): string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const running = new Set<ChildProcess>();

function start(env: Record<string, string>): Started {
  const base = Object.fromEntries(Object.entries(process.env).filter(([key]) => !isConfigKey(key)));
  const child = spawn("npm", ["start"], {
    cwd: root,
    env: { ...base, LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group, so that a test that fails half-way can still stop everything it started.
    detached: true,
  });
  running.add(child);
  const lines: LogLine[] = [];
  let raw = "";
  let pending = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    raw += chunk;
    pending += chunk;
    const parts = pending.split("\n");
    pending = parts.pop() ?? "";
    for (const part of parts) {
      if (!part.startsWith("{")) continue;
      try {
        lines.push(JSON.parse(part) as LogLine);
      } catch {
        // not a log line
      }
    }
  });
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    raw += chunk;
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    }),
  );
  return { child, port: 0, lines, output: () => raw, exit };
}

async function listening(app: Started): Promise<LogLine> {
  let exited = false;
  void app.exit.then(() => {
    exited = true;
  });
  const found = () => app.lines.find((l) => l.msg.startsWith("listening on"));
  const ok = await within(startMs, () => found() !== undefined || exited);
  const line = found();
  if (!ok || !line) throw new Error(`the app did not say it was listening:\n${app.output()}`);
  app.port = Number(line.port);
  return line;
}

/** Sends SIGTERM to the started PID; resolves with when the port was free and the stop logged. */
async function stopWithSigterm(app: Started) {
  const sent = Date.now();
  expect(app.child.kill("SIGTERM")).toBe(true);
  const freed = await within(5_000, async () => !(await accepts("127.0.0.1", app.port)));
  const logged = await within(Math.max(0, 5_000 - (Date.now() - sent)), () =>
    app.lines.some((l) => l.msg === "shutting down" && l.signal === "SIGTERM"),
  );
  return { freed, logged };
}

/** An IPv4 address of this machine other than loopback, if it has one. */
function externalAddress(): string | null {
  for (const addresses of Object.values(networkInterfaces()))
    for (const a of addresses ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  return null;
}

let dataDir: string;
beforeAll(() => {
  dataDir = mkdtempSync(path.join(tmpdir(), "tandao-clean-stop-"));
});
afterAll(() => {
  for (const child of running) if (child.pid) process.kill(-child.pid, "SIGKILL");
  rmSync(dataDir, { recursive: true, force: true });
});

describe("npm start, stopped with SIGTERM", () => {
  it("binds 127.0.0.1 in sandbox by default, says so, and on SIGTERM frees the port and logs the stop within 5 s", async () => {
    // Every port of the app's own choosing (PORT=0 too): a port picked free beforehand could be taken
    // by one of the sandbox's fakes before the app listens. The Telegram fake: a developer's own
    // sandbox may hold 3081.
    const app = start({ PORT: "0", DATA_DIR: dataDir, TELEGRAM_SANDBOX_PORT: "0", ...noFixedPorts });
    const line = await listening(app);
    const port = app.port;
    expect(port).toBeGreaterThan(0);
    expect(line).toMatchObject({ address: "127.0.0.1", msg: `listening on http://127.0.0.1:${port}` });
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: "ok", mode: "sandbox" });
    // Really bound to loopback only: another address of this machine is refused.
    const external = externalAddress();
    if (external) expect(await accepts(external, port)).toBe(false);

    expect(await stopWithSigterm(app), app.output()).toEqual({ freed: true, logged: true });
    const exit = await Promise.race([
      app.exit,
      new Promise<null>((resolve) => setTimeout(() => resolve(null), 15_000)),
    ]);
    expect(exit, `still running after SIGTERM:\n${app.output()}`).toEqual({ code: 0, signal: null });
  }, 150_000);

  it("with HOST=0.0.0.0 binds every interface and says 0.0.0.0", async () => {
    const app = start({
      PORT: "0",
      DATA_DIR: dataDir,
      HOST: "0.0.0.0",
      TELEGRAM_SANDBOX_PORT: "0",
      ...noFixedPorts,
    });
    const line = await listening(app);
    const port = app.port;
    expect(port).toBeGreaterThan(0);
    expect(line).toMatchObject({ address: "0.0.0.0", msg: `listening on http://0.0.0.0:${port}` });
    const external = externalAddress();
    if (external) expect(await accepts(external, port)).toBe(true);

    expect(await stopWithSigterm(app), app.output()).toEqual({ freed: true, logged: true });
    const exit = await Promise.race([
      app.exit,
      new Promise<null>((resolve) => setTimeout(() => resolve(null), 15_000)),
    ]);
    expect(exit, `still running after SIGTERM:\n${app.output()}`).toEqual({ code: 0, signal: null });
  }, 150_000);
});
