import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RouterConnection } from "../../src/network/connection.ts";
import type { DesiredHotspotUser, DesiredProfile, DesiredSecret } from "../../src/network/desired.ts";
import {
  ensureHotspotUser,
  ensureProfile,
  ensureSecret,
  RouterConflictError,
  removeHotspotUser,
  removeProfile,
  removeSecret,
} from "../../src/network/driver.ts";
import { RouterOsEmulator } from "../../src/network/emulator/server.ts";

let router: RouterOsEmulator;
let api: RouterConnection;
beforeAll(async () => {
  router = await new RouterOsEmulator().start();
  api = new RouterConnection({
    host: "127.0.0.1",
    port: router.port,
    tls: false,
    username: "admin",
    password: "",
  });
});
afterAll(async () => {
  await api.close();
  await router.stop();
});

const writes = () => router.received.filter((c) => /\/(add|set|remove)$/.test(c.command)).length;

const pppProfile: DesiredProfile = {
  kind: "ppp",
  planId: 1,
  name: "tandao-home",
  rateLimit: "5M/10M",
  comment: "tandao:plan:1",
};
const hotspotProfile: DesiredProfile = {
  ...pppProfile,
  kind: "hotspot",
  planId: 2,
  name: "tandao-day",
  comment: "tandao:plan:2",
};

describe("driver", () => {
  it("ensure calls are idempotent: the second run reads and changes nothing", async () => {
    const secret: DesiredSecret = {
      subscriptionId: 7,
      name: "jane",
      password: "pw",
      profile: "tandao-home",
      disabled: false,
      comment: "tandao:sub:7",
    };
    const user: DesiredHotspotUser = {
      voucherId: 9,
      name: "ABCD2345",
      password: "ABCD2345",
      profile: "tandao-day",
      limitUptimeSeconds: 86_400,
      limitBytesTotal: null,
      comment: "tandao:voucher:9",
    };
    expect((await ensureProfile(api, pppProfile)).change).toBe("created");
    expect((await ensureProfile(api, hotspotProfile)).change).toBe("created");
    expect((await ensureSecret(api, secret)).change).toBe("created");
    expect((await ensureHotspotUser(api, user)).change).toBe("created");
    const before = writes();
    expect((await ensureProfile(api, pppProfile)).change).toBe("unchanged");
    expect((await ensureSecret(api, secret)).change).toBe("unchanged");
    expect((await ensureHotspotUser(api, user)).change).toBe("unchanged");
    expect(writes()).toBe(before);

    // disable: one set, and the live session is dropped; enabling again drops nothing
    router.connectPppoe("jane");
    expect(await ensureSecret(api, { ...secret, disabled: true })).toEqual({ change: "updated", kicked: 1 });
    expect(router.find("/ppp/secret", "jane")?.disabled).toBe("true");
    expect(await ensureSecret(api, secret)).toEqual({ change: "updated", kicked: 0 });

    expect((await removeSecret(api, "tandao:sub:7")).change).toBe("removed");
    expect((await removeSecret(api, "tandao:sub:7")).change).toBe("absent");
    router.connectHotspot("ABCD2345");
    expect(await removeHotspotUser(api, "tandao:voucher:9")).toEqual({ change: "removed", kicked: 1 });
    expect((await removeProfile(api, "hotspot", "tandao:plan:2")).change).toBe("removed");
    expect(router.find("/ip/hotspot/user/profile", "tandao-day")).toBeUndefined();
  });

  it("never adopts an entry it did not make", async () => {
    router.insert("/ppp/profile", { name: "tandao-biz", "rate-limit": "1M/1M" });
    await expect(
      ensureProfile(api, { ...pppProfile, planId: 3, name: "tandao-biz", comment: "tandao:plan:3" }),
    ).rejects.toBeInstanceOf(RouterConflictError);
    expect(router.find("/ppp/profile", "tandao-biz")?.["rate-limit"]).toBe("1M/1M");
  });

  it("a voucher code taken on the router by hand is reported without the code itself", async () => {
    router.insert("/ip/hotspot/user", { name: "QRST6789", password: "own", profile: "default" });
    const refused = ensureHotspotUser(api, {
      voucherId: 11,
      name: "QRST6789",
      password: "QRST6789",
      profile: "default",
      limitUptimeSeconds: 3_600,
      limitBytesTotal: null,
      comment: "tandao:voucher:11",
    });
    await expect(refused).rejects.toBeInstanceOf(RouterConflictError);
    await expect(refused).rejects.toThrow(/tandao:voucher:11/);
    await expect(refused).rejects.not.toThrow(/QRST6789/);
  });
});
