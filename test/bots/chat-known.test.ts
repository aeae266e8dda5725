import { describe, expect, it } from "vitest";
import { KnownChats } from "../../src/bots/chat-known.ts";
import type { ChatState } from "../../src/bots/chat-state.ts";

const at = new Date("2026-04-03T06:00:00Z");
const later = (ms: number) => new Date(at.getTime() + ms);

const state = (savedAt: Date): ChatState => ({
  session: { sessionKey: "k", inputs: [], language: null, step: 7, lastActivityAt: savedAt },
  phone: null,
  linked: false,
  customer: null,
  replyRoute: null,
  menuSession: null,
  version: { current: "v", freshSession: "f" },
});

describe("the chats an instance keeps", () => {
  it("hands a chat's state to one message only", () => {
    const known = new KnownChats();
    known.remember("telegram", "1", state(at), "main");
    expect(known.take("telegram", "1", at)?.screen).toBe("main");
    expect(known.take("telegram", "1", at)).toBeUndefined();
  });

  it("does not hand out a state saved longer ago than its limit", () => {
    const known = new KnownChats(10, 60_000);
    known.remember("telegram", "1", state(at), "main");
    known.remember("telegram", "2", state(at), "main");
    expect(known.take("telegram", "1", later(60_000))).toBeDefined();
    expect(known.take("telegram", "2", later(60_001))).toBeUndefined();
  });

  it("does not hand out a chat whose screen was found to act: its input is stored as it comes", () => {
    const known = new KnownChats();
    known.remember("telegram", "1", state(at), "payConfirm");
    known.remember("telegram", "2", state(at), "main");
    known.actsOn("payConfirm");
    expect(known.take("telegram", "1", at)).toBeUndefined();
    expect(known.take("telegram", "2", at)).toBeDefined();
  });

  it("forgets the chat saved least recently beyond its capacity, and keeps nothing without a version", () => {
    const known = new KnownChats(2);
    known.remember("telegram", "1", state(at), "main");
    known.remember("telegram", "2", state(at), "main");
    known.remember("telegram", "1", state(at), "main");
    known.remember("telegram", "3", state(at), "main");
    expect(known.has("telegram", "2")).toBe(false);
    expect(known.has("telegram", "1")).toBe(true);
    const { version: _, ...unversioned } = state(at);
    known.remember("telegram", "4", unversioned, "main");
    expect(known.has("telegram", "4")).toBe(false);
  });
});
