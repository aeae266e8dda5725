import net from "node:net";
import { RouterOSAPI } from "node-routeros";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { encodeSentence, SentenceReader } from "../../src/network/emulator/protocol.ts";
import { RouterOsEmulator } from "../../src/network/emulator/server.ts";

/**
 * The emulator refuses what a RouterOS 7 router refuses, with the router's texts, changes nothing
 * when it refuses, and speaks the wire protocol as a router does (tags, interleaved replies).
 */

let router: RouterOsEmulator;
const clients: RouterOSAPI[] = [];
beforeAll(async () => {
  router = await new RouterOsEmulator().start();
});
afterEach(async () => {
  router.faults.interleaveMs = 0;
  router.faults.delayFor = null;
  for (const c of clients.splice(0)) await c.close().catch(() => undefined);
});
afterAll(async () => {
  await router.stop();
});

async function client(on = router): Promise<RouterOSAPI> {
  const api = new RouterOSAPI({ host: "127.0.0.1", port: on.port, user: "admin", password: "", timeout: 5 });
  clients.push(api);
  await api.connect();
  return api;
}

/** A bare API session: what goes over the wire, sentence by sentence. */
async function rawSession(on = router) {
  const socket = net.connect(on.port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  const reader = new SentenceReader();
  const received: string[][] = [];
  const waiters: Array<() => void> = [];
  socket.on("data", (chunk) => {
    received.push(...reader.push(chunk));
    for (const wake of waiters.splice(0)) wake();
  });
  const until = async (count: number) => {
    while (received.length < count) await new Promise<void>((resolve) => waiters.push(resolve));
    return received.slice(0, count);
  };
  socket.write(encodeSentence(["/login", "=name=admin", "=password="]));
  await until(1);
  received.length = 0;
  return { socket, received, until, close: () => socket.destroy() };
}

describe("parameters and values, checked as RouterOS 7 checks them", () => {
  it("refuses a parameter the menu does not have, naming it, and stores nothing", async () => {
    const api = await client();
    await expect(
      api.write("/ppp/secret/add", ["=name=typo", "=pasword=x", "=service=pppoe"]),
    ).rejects.toThrow(/^unknown parameter pasword$/);
    expect(router.find("/ppp/secret", "typo")).toBeUndefined();
    // Hotspot user profiles have no comment on a real router.
    await expect(
      api.write("/ip/hotspot/user/profile/add", ["=name=hp", "=comment=tandao:plan:1"]),
    ).rejects.toThrow("unknown parameter comment");
    await expect(api.write("/ppp/secret/print", ["=detail=", "=colour=red"])).rejects.toThrow(
      "unknown parameter colour",
    );
  });

  it("refuses a service outside RouterOS's list and a profile that does not exist", async () => {
    const api = await client();
    await expect(api.write("/ppp/secret/add", ["=name=svc", "=service=dialup"])).rejects.toThrow(
      "input does not match any value of service",
    );
    await expect(api.write("/ppp/secret/add", ["=name=svc", "=profile=nope"])).rejects.toThrow(
      "input does not match any value of profile",
    );
    expect(router.find("/ppp/secret", "svc")).toBeUndefined();
    for (const service of ["any", "async", "l2tp", "ovpn", "pppoe", "pptp", "sstp"]) {
      await api.write("/ppp/secret/add", [`=name=svc-${service}`, `=service=${service}`]);
    }
    expect(router.find("/ppp/secret", "svc-sstp")?.service).toBe("sstp");
  });

  it("reads rate limits in RouterOS's format and refuses anything else", async () => {
    const api = await client();
    await expect(api.write("/ppp/profile/add", ["=name=bad", "=rate-limit=fast please"])).rejects.toThrow(
      "invalid value for argument rate-limit",
    );
    await expect(
      api.write("/ip/hotspot/user/profile/add", ["=name=bad", "=rate-limit=10Mbps"]),
    ).rejects.toThrow("invalid value for argument rate-limit");
    expect(router.find("/ppp/profile", "bad")).toBeUndefined();
    const good = ["5M/10M", "512k/1M", "2M", "1M/2M 2M/4M 768k/1536k 8/8 8 256k/512k", ""];
    for (const [i, limit] of good.entries()) {
      await api.write("/ppp/profile/add", [`=name=rl${i}`, `=rate-limit=${limit}`]);
      expect(router.find("/ppp/profile", `rl${i}`)?.["rate-limit"]).toBe(limit);
    }
    // A set is checked too, and a refused set changes nothing.
    const id = router.find("/ppp/profile", "rl0")![".id"]!;
    await expect(api.write("/ppp/profile/set", [`=.id=${id}`, "=rate-limit=9X"])).rejects.toThrow(
      "invalid value for argument rate-limit",
    );
    expect(router.find("/ppp/profile", "rl0")?.["rate-limit"]).toBe("5M/10M");
  });

  it("takes a byte limit only as a non-negative whole number, and a time limit only as an interval", async () => {
    const api = await client();
    for (const bad of ["-5", "lots", "1.5"]) {
      await expect(
        api.write("/ip/hotspot/user/add", ["=name=LIMITS", `=limit-bytes-total=${bad}`]),
      ).rejects.toThrow(/invalid value for argument limit-bytes-total/);
    }
    await expect(api.write("/ip/hotspot/user/add", ["=name=LIMITS", "=limit-uptime=soon"])).rejects.toThrow(
      "invalid value for argument limit-uptime",
    );
    await expect(api.write("/ip/hotspot/user/add", ["=name=LIMITS", "=disabled=maybe"])).rejects.toThrow(
      "input does not match any value of disabled",
    );
    expect(router.find("/ip/hotspot/user", "LIMITS")).toBeUndefined();
    await api.write("/ip/hotspot/user/add", ["=name=LIMITS", "=limit-bytes-total=0", "=limit-uptime=3600"]);
    expect(router.find("/ip/hotspot/user", "LIMITS")).toMatchObject({
      "limit-bytes-total": "0",
      "limit-uptime": "1h",
    });
  });

  it("refuses to remove a profile in use or a built-in one, and removes nothing of the command", async () => {
    const api = await client();
    await api.write("/ip/hotspot/user/profile/add", ["=name=day", "=rate-limit=1M/2M"]);
    await api.write("/ip/hotspot/user/profile/add", ["=name=spare"]);
    await api.write("/ip/hotspot/user/add", ["=name=USER1", "=profile=day"]);
    const day = router.find("/ip/hotspot/user/profile", "day")![".id"]!;
    const spare = router.find("/ip/hotspot/user/profile", "spare")![".id"]!;
    await expect(api.write("/ip/hotspot/user/profile/remove", [`=.id=${spare},${day}`])).rejects.toThrow(
      "profile is in use",
    );
    expect(router.find("/ip/hotspot/user/profile", "spare")).toBeDefined();
    await api.write("/ppp/profile/add", ["=name=home", "=rate-limit=5M/10M"]);
    await api.write("/ppp/secret/add", ["=name=jane", "=profile=home"]);
    await expect(api.write("/ppp/profile/remove", ["=numbers=home"])).rejects.toThrow("profile is in use");
    await expect(api.write("/ppp/profile/remove", ["=numbers=default"])).rejects.toThrow(
      "cannot remove default profile",
    );
    await expect(api.write("/ip/hotspot/user/profile/remove", ["=numbers=default"])).rejects.toThrow(
      "cannot remove default profile",
    );
    // Once nothing uses it, it goes.
    await api.write("/ip/hotspot/user/remove", ["=numbers=USER1"]);
    await api.write("/ip/hotspot/user/profile/remove", [`=.id=${day}`]);
    expect(router.find("/ip/hotspot/user/profile", "day")).toBeUndefined();
  });

  it("keeps commands to their menus: sessions are only printed and removed", async () => {
    const api = await client();
    await expect(api.write("/ppp/active/add", ["=name=x"])).rejects.toThrow("no such command");
    await expect(api.write("/ppp/profile/disable", ["=numbers=default"])).rejects.toThrow("no such command");
    await expect(api.write("/ppp/nothing/print")).rejects.toThrow("no such command prefix");
  });

  it("RouterOS 6 says only 'unknown parameter'", async () => {
    const old = await new RouterOsEmulator({ version: "6.49.10" }).start();
    try {
      const api = await client(old);
      await expect(api.write("/ppp/secret/add", ["=name=x", "=pasword=y"])).rejects.toThrow(
        /^unknown parameter$/,
      );
    } finally {
      await old.stop();
    }
  });
});

describe("the wire, as a router speaks it", () => {
  it("puts .tag right after the reply word, on every sentence of the reply", async () => {
    const session = await rawSession();
    try {
      router.insert("/ppp/profile", { name: "wire-a", "rate-limit": "1M/1M" });
      session.socket.write(encodeSentence(["/ppp/profile/print", "?name=wire-a", ".tag=7"]));
      const [row, done] = await session.until(2);
      expect(row!.slice(0, 2)).toEqual(["!re", ".tag=7"]);
      expect(row).toContain("=name=wire-a");
      expect(done).toEqual(["!done", ".tag=7"]);
      session.received.length = 0;
      session.socket.write(encodeSentence(["/ppp/secret/add", "=name=w", "=pasword=x", ".tag=8"]));
      expect(await session.until(2)).toEqual([
        ["!trap", ".tag=8", "=message=unknown parameter pasword"],
        ["!done", ".tag=8"],
      ]);
    } finally {
      session.close();
    }
  });

  it("interleaves the replies to concurrent commands, newest first", async () => {
    router.faults.interleaveMs = 20;
    router.insert("/ip/hotspot/active", { user: "IL1" });
    router.insert("/ip/hotspot/active", { user: "IL2" });
    const session = await rawSession();
    try {
      const batches = router.interleavedBatches;
      // Two commands in one write: the router holds and mixes their replies.
      session.socket.write(
        Buffer.concat([
          encodeSentence(["/ip/hotspot/active/print", "?user=IL1", "?user=IL2", "?#|", ".tag=a"]),
          encodeSentence(["/system/identity/print", ".tag=b"]),
        ]),
      );
      const replies = await session.until(5);
      expect(replies.map((s) => `${s[0]} ${s[1]}`)).toEqual([
        "!re .tag=b",
        "!re .tag=a",
        "!done .tag=b",
        "!re .tag=a",
        "!done .tag=a",
      ]);
      expect(router.interleavedBatches).toBe(batches + 1);
    } finally {
      session.close();
    }
  });

  it("node-routeros sorts interleaved and overtaking replies by tag", async () => {
    const api = await client();
    router.faults.interleaveMs = 5;
    for (let i = 0; i < 3; i++) router.insert("/ppp/active", { name: `ovt-${i}`, address: `10.9.0.${i}` });
    // The first print is slow: the later commands' answers overtake it.
    router.faults.delayFor = (c) => (c.queries.includes("name=ovt-0") ? 60 : 0);
    const batches = router.interleavedBatches;
    const asked = Array.from({ length: 30 }, (_, i) => `ovt-${i % 3}`);
    const rows = await Promise.all(asked.map((name) => api.write("/ppp/active/print", [`?name=${name}`])));
    expect(rows.map((r) => r.map((row) => row.name))).toEqual(asked.map((name) => [name]));
    expect(router.interleavedBatches).toBeGreaterThan(batches);
  });
});
