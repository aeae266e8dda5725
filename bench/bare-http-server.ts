import { createServer, type Server, type Socket } from "node:net";

/**
 * A bare HTTP/1.1 server on 127.0.0.1 for a benchmark's fake of an outside service: requests with a
 * Content-Length body (or none) on keep-alive connections, answered in order with JSON. The
 * counterpart of keep-alive-client.ts: the load generator shares two cores with the app and
 * PostgreSQL, and node:http with hono (the fake's own server) spent a fifth of a core serving the
 * app's 1,000 calls a second, which the app's latency then paid for. Anything else (a chunked body,
 * say) is answered 400 and the connection closed.
 */
export async function serveBare(
  answer: (path: string, body: string) => Promise<{ status: number; body: string }>,
): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    let received: Buffer = Buffer.alloc(0);
    // One request at a time per connection, so answers go out in the order asked.
    let busy = false;
    const next = async () => {
      while (!busy) {
        const headEnd = received.indexOf("\r\n\r\n");
        if (headEnd < 0) return;
        const head = received.subarray(0, headEnd).toString("latin1");
        const path = / (\S+) HTTP\/1\.1\r\n/.exec(head)?.[1];
        const length = /\r\ncontent-length: *(\d+)/i.exec(head);
        if (!path || /\r\ntransfer-encoding:/i.test(head)) {
          socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
          received = Buffer.alloc(0);
          return;
        }
        const end = headEnd + 4 + Number(length?.[1] ?? 0);
        if (received.length < end) return;
        const body = received.subarray(headEnd + 4, end).toString("utf8");
        received = received.subarray(end);
        busy = true;
        const reply = await answer(path, body).catch((error: unknown) => ({
          status: 500,
          body: JSON.stringify({ ok: false, error_code: 500, description: String(error) }),
        }));
        busy = false;
        if (socket.destroyed) return;
        socket.write(
          `HTTP/1.1 ${reply.status} ${reply.status === 200 ? "OK" : "Error"}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(reply.body)}\r\nConnection: keep-alive\r\n\r\n${reply.body}`,
        );
      }
    };
    socket.on("data", (chunk: Buffer) => {
      received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
      void next();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  return {
    port: typeof address === "object" && address ? address.port : 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
