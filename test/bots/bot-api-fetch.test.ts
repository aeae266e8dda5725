import { once } from "node:events";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { createBotApiFetch } from "../../src/bots/telegram/bot-api-fetch.ts";

type Handler = (req: IncomingMessage, body: string, res: ServerResponse) => void;

const servers: ReturnType<typeof createServer>[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    server.close();
  }
});

async function serveOnce(handler: Handler): Promise<string> {
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    handler(req, Buffer.concat(chunks).toString("utf8"), res);
  });
  servers.push(server);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe("the Bot API fetch", () => {
  it("posts the method's JSON to its path and reads the answer's JSON, whatever the status", async () => {
    const seen: { method?: string; url?: string; type?: string; body?: string } = {};
    const root = await serveOnce((req, body, res) => {
      Object.assign(seen, { method: req.method, url: req.url, type: req.headers["content-type"], body });
      res.writeHead(400, { "content-type": "application/json" });
      res.end(JSON.stringify({ ok: false, error_code: 400, description: "Bad Request: chat not found" }));
    });
    const call = createBotApiFetch();
    const response = await call(`${root}/botTOKEN/sendMessage`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ chat_id: 7, text: "Habari" }),
    });
    expect(await response.json()).toEqual({
      ok: false,
      error_code: 400,
      description: "Bad Request: chat not found",
    });
    expect(seen).toEqual({
      method: "POST",
      url: "/botTOKEN/sendMessage",
      type: "application/json",
      body: '{"chat_id":7,"text":"Habari"}',
    });
  });

  it("sends a streamed body (a file upload) whole, and reads an answer that comes in pieces", async () => {
    let received = "";
    const root = await serveOnce((_req, body, res) => {
      received = body;
      res.writeHead(200, { "content-type": "application/json" });
      // A body written in three pieces reaches the client as several chunks.
      res.write('{"ok":true,');
      setImmediate(() => {
        res.write('"result":{"message_id":');
        setImmediate(() => res.end("42}}"));
      });
    });
    const call = createBotApiFetch();
    const upload = Readable.from(["--b\r\n", "photo bytes", "\r\n--b--\r\n"]);
    const response = await call(`${root}/botTOKEN/sendPhoto`, {
      method: "POST",
      headers: { "content-type": "multipart/form-data; boundary=b" },
      body: upload as unknown as RequestInit["body"],
    });
    expect(await response.json()).toEqual({ ok: true, result: { message_id: 42 } });
    expect(received).toBe("--b\r\nphoto bytes\r\n--b--\r\n");
  });

  it("gives up a call its signal aborts, and a call to a server that is not there", async () => {
    const root = await serveOnce(() => {
      // Never answers.
    });
    const call = createBotApiFetch();
    const controller = new AbortController();
    const hanging = call(`${root}/botTOKEN/getMe`, { method: "POST", signal: controller.signal });
    controller.abort(new Error("timed out"));
    await expect(hanging).rejects.toThrow("timed out");

    const aborted = AbortSignal.abort(new Error("already gone"));
    await expect(call(`${root}/botTOKEN/getMe`, { method: "POST", signal: aborted })).rejects.toThrow(
      "already gone",
    );

    const closed = await serveOnce(() => {});
    servers.pop()?.close();
    await expect(call(`${closed}/botTOKEN/getMe`, { method: "POST" })).rejects.toThrow(/ECONNREFUSED/);
  });
});
