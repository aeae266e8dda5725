import net from "node:net";
import { RouterOSAPI } from "node-routeros";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { RouterConnection, RouterTrapError, RouterUnavailableError } from "../../src/network/connection.ts";
import { encodeReply, SentenceReader } from "../../src/network/emulator/protocol.ts";
import { RouterOsEmulator } from "../../src/network/emulator/server.ts";
import { waitFor } from "./support.ts";

/**
 * The real node-routeros client (as patched under patches/) against the emulator over TCP, in this
 * process: an exception thrown from a socket handler would fail the run as an uncaught error.
 */
describe("node-routeros against the RouterOS emulator", () => {
  let router: RouterOsEmulator;
  const clients: RouterOSAPI[] = [];

  beforeAll(async () => {
    router = await new RouterOsEmulator({ username: "api", password: "s3cret" }).start();
  });
  afterEach(async () => {
    router.faults.delayMs = 0;
    router.faults.dropWhen = null;
    for (const c of clients.splice(0)) await c.close().catch(() => undefined);
  });
  afterAll(async () => {
    await router.stop();
  });

  async function client(): Promise<RouterOSAPI> {
    const api = new RouterOSAPI({
      host: "127.0.0.1",
      port: router.port,
      user: "api",
      password: "s3cret",
      timeout: 5,
    });
    clients.push(api);
    await api.connect();
    return api;
  }

  it("answers a print that matches nothing with !empty (7.18+) and the client resolves to no rows", async () => {
    const api = await client();
    expect(await api.write("/ppp/secret/print", ["?name=nobody"])).toEqual([]);
    // the connection is still usable afterwards
    await api.write("/ppp/profile/add", ["=name=p1", "=rate-limit=1M/2M"]);
    const rows = await api.write("/ppp/profile/print", ["?name=p1"]);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ name: "p1", "rate-limit": "1M/2M" });
  });

  it("rejects a !trap followed by !done with RouterOS's message, and keeps going", async () => {
    const api = await client();
    await api.write("/ppp/secret/add", ["=name=alice", "=password=x"]);
    await expect(api.write("/ppp/secret/add", ["=name=alice", "=password=y"])).rejects.toThrow(
      "failure: secret with the same name already exists",
    );
    await expect(api.write("/ppp/secret/remove", ["=.id=*FFFF"])).rejects.toThrow("no such item");
    expect(await api.write("/ppp/secret/print", ["?name=alice"])).toHaveLength(1);
  });

  it("many concurrent commands on one connection are told apart by their tags", async () => {
    const api = await client();
    const names = Array.from({ length: 300 }, (_, i) => `tag-user-${i}`);
    await Promise.all(
      names.map((n) => api.write("/ip/hotspot/user/add", [`=name=${n}`, "=limit-uptime=3600"])),
    );
    const rows = await Promise.all(names.map((n) => api.write("/ip/hotspot/user/print", [`?name=${n}`])));
    expect(rows.map((r) => r[0]?.name)).toEqual(names);
    expect(rows[0]?.[0]?.["limit-uptime"]).toBe("1h");
  });

  it("a connection dropped in the middle of a command rejects it and the process lives on", async () => {
    const api = await client();
    router.faults.dropWhen = (c) => c.command === "/system/resource/print";
    await expect(api.write("/system/resource/print")).rejects.toThrow();
    expect(api.connected).toBe(false);
  });

  it("a connection reset with no 'error' listener does not throw", async () => {
    const api = await client();
    expect(api.listenerCount("error")).toBe(0);
    const closed = new Promise((resolve) => api.once("close", resolve));
    router.dropConnections();
    await closed;
    await new Promise((r) => setTimeout(r, 50));
    expect(api.connected).toBe(false);
  });

  it("!fatal closes the connection and fails the command it answers, without throwing", async () => {
    const api = await client();
    router.faults.delayMs = 100;
    const answered = api.write("/ppp/secret/print");
    const quit = api.write("/quit");
    await expect(answered).resolves.toBeInstanceOf(Array);
    await expect(quit).rejects.toThrow();
    expect(api.connected).toBe(false);
  });

  it("a RouterOS 6 router never sends !empty", async () => {
    const old = await new RouterOsEmulator({ version: "6.49.10" }).start();
    try {
      const api = new RouterOSAPI({
        host: "127.0.0.1",
        port: old.port,
        user: "admin",
        password: "",
        timeout: 5,
      });
      clients.push(api);
      await api.connect();
      expect(await api.write("/ppp/secret/print")).toEqual([]);
    } finally {
      await old.stop();
    }
  });

  it("wrong credentials are refused at login", async () => {
    const api = new RouterOSAPI({
      host: "127.0.0.1",
      port: router.port,
      user: "api",
      password: "nope",
      timeout: 5,
    });
    await expect(api.connect()).rejects.toThrow();
  });
});

describe("RouterConnection", () => {
  let router: RouterOsEmulator;
  beforeAll(async () => {
    router = await new RouterOsEmulator().start();
  });
  afterAll(async () => {
    await router.stop();
  });
  const endpoint = () => ({
    host: "127.0.0.1",
    port: router.port,
    tls: false,
    username: "admin",
    password: "",
  });

  it("keeps one logged-in connection for many commands and reconnects after a loss", async () => {
    const connection = new RouterConnection(endpoint());
    const logins = router.loginCount;
    await Promise.all(Array.from({ length: 50 }, () => connection.run("/system/identity/print")));
    expect(router.loginCount - logins).toBe(1);
    router.dropConnections();
    await waitFor(() => !connection.connected, 2_000);
    expect(await connection.run("/system/identity/print")).toEqual([{ name: "MikroTik" }]);
    expect(router.loginCount - logins).toBe(2);
    await connection.close();
  });

  it("tells a refused command (trap) from an unreachable router", async () => {
    const connection = new RouterConnection(endpoint());
    await expect(connection.run("/ppp/secret/remove", ["=.id=*999"])).rejects.toBeInstanceOf(RouterTrapError);
    await connection.close();
  });

  it("times out a slow answer and opens the circuit for a dead router so callers fail fast", async () => {
    const connection = new RouterConnection(endpoint(), {
      commandTimeoutMs: 150,
      connectTimeoutMs: 300,
      breaker: { threshold: 2, baseCooldownMs: 5_000, maxCooldownMs: 5_000 },
    });
    router.faults.delayMs = 1_000;
    await expect(connection.run("/system/identity/print")).rejects.toBeInstanceOf(RouterUnavailableError);
    router.faults.delayMs = 0;
    const dead = new RouterOsEmulator();
    await dead.start();
    const port = dead.port;
    await dead.stop();
    const down = new RouterConnection(
      { ...endpoint(), port },
      { breaker: { threshold: 2, baseCooldownMs: 5_000, maxCooldownMs: 5_000 } },
    );
    await expect(down.run("/system/identity/print")).rejects.toBeInstanceOf(RouterUnavailableError);
    await expect(down.run("/system/identity/print")).rejects.toBeInstanceOf(RouterUnavailableError);
    const started = Date.now();
    await expect(down.run("/system/identity/print")).rejects.toThrow(/unreachable/);
    // no connection attempt, no timeout: the open circuit answers at once
    expect(Date.now() - started).toBeLessThan(200);
    await down.close();
    await connection.close();
  });

  it("lets go of a router that went silent: closing (an admin's router edit, a shutdown) does not hang", async () => {
    // A router that logs in and answers, then vanishes: it answers nothing more, not even the end
    // of the TCP connection.
    let silent = false;
    const sockets = new Set<net.Socket>();
    const vanishing = net.createServer({ allowHalfOpen: true }, (socket) => {
      sockets.add(socket);
      socket.on("error", () => {});
      const reader = new SentenceReader();
      socket.on("data", (chunk) => {
        for (const words of reader.push(chunk)) {
          if (silent) continue;
          const tag = words.find((w) => w.startsWith(".tag="))?.slice(".tag=".length);
          socket.write(encodeReply(["!done"], tag));
        }
      });
    });
    await new Promise<void>((resolve) => vanishing.listen(0, "127.0.0.1", resolve));
    const { port } = vanishing.address() as net.AddressInfo;
    try {
      const connection = new RouterConnection(
        { ...endpoint(), port },
        { commandTimeoutMs: 500, connectTimeoutMs: 500, keepaliveMs: 500 },
      );
      await connection.run("/system/identity/print");
      expect(connection.connected).toBe(true);
      silent = true;
      const started = Date.now();
      await connection.close();
      expect(Date.now() - started).toBeLessThan(3_000);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => vanishing.close(() => resolve()));
    }
  }, 10_000);
});
