import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import path from "node:path";

/** Running the Cloudflare Worker locally for test/worker.test.ts: wrangler, ports, requests. */

const wrangler = path.resolve(
  import.meta.dirname,
  "..",
  "..",
  "node_modules",
  "wrangler",
  "bin",
  "wrangler.js",
);

/** Runs wrangler with telemetry and update checks off; resolves with its output when it exits. */
export function runWrangler(args: string[], cwd: string, env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [wrangler, ...args], {
    cwd,
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "1", NO_COLOR: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group: workerd, its child, goes with it.
    detached: true,
  });
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr!.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, exited, output: () => output };
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export function stop(child: ChildProcess | undefined) {
  if (!child?.pid || child.exitCode !== null) return;
  try {
    process.kill(-child.pid, "SIGTERM");
  } catch {
    // already gone
  }
}

/**
 * A request to the Worker under `wrangler dev`. Locally, workerd breaks the connection after an
 * answer given before the request's body was read (a webhook refusing a wrong secret does just that),
 * and wrangler's proxy answers the next request on it 503 "Your worker restarted mid-request" without
 * passing it on; that answer is the dev server's, so the request is sent once more. A deployed Worker
 * has no such proxy.
 */
export async function send(url: string, init?: RequestInit): Promise<Response> {
  const answer = await fetch(url, init);
  if (answer.status !== 503 || answer.headers.get("retry-after") !== "0") return answer;
  if (!(await answer.clone().text()).startsWith("Your worker restarted mid-request")) return answer;
  return fetch(url, init);
}

/** Waits until `read` gives something: what the Worker does after its answer (WhatsApp messages). */
export async function eventually<T>(read: () => Promise<T | null | undefined>, what: string): Promise<T> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const value = await read();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`not reached in time: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
