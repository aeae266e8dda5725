import { connect, type Socket } from "node:net";

/**
 * One keep-alive HTTP/1.1 connection to the app on 127.0.0.1, one POST at a time: a simulated
 * phone (B3) or one of Telegram's webhook connections (B7). A bare client on purpose: the load
 * shares two cores with the app and PostgreSQL, and node:http (or undici) spent a quarter of a core
 * on it, which the app's latency then paid for.
 */
export class KeepAliveClient {
  private socket: Socket | null = null;
  private received = "";
  private waiting: {
    resolve: (answer: { status: number; text: string }) => void;
    reject: (error: Error) => void;
  } | null = null;

  /** `headers`: the request's own header lines (Content-Type and the like), without Host or length. */
  constructor(
    private readonly port: number,
    private readonly path: string,
    private readonly headers: readonly string[],
  ) {}

  post(body: string): Promise<{ status: number; text: string }> {
    if (this.waiting) return Promise.reject(new Error("one request at a time"));
    const socket = this.connected();
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      socket.write(
        `POST ${this.path} HTTP/1.1\r\nHost: 127.0.0.1:${this.port}\r\n${this.headers.map((h) => `${h}\r\n`).join("")}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    });
  }

  close(): void {
    this.socket?.destroy();
  }

  private connected(): Socket {
    if (this.socket && !this.socket.destroyed) return this.socket;
    const socket = connect({ host: "127.0.0.1", port: this.port, noDelay: true });
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      if (this.socket !== socket) return;
      this.received += chunk;
      this.answer();
    });
    const fail = (error: Error) => {
      // A connection dropped while idle may report it after the next one took its place.
      if (this.socket !== socket) return;
      this.socket = null;
      this.received = "";
      const waiting = this.waiting;
      this.waiting = null;
      waiting?.reject(error);
    };
    socket.on("error", fail);
    socket.on("close", () => fail(new Error("connection closed")));
    // Closed when idle before the server's 5 s keep-alive timeout, so no request is ever written to
    // a connection the server is closing at that moment.
    socket.setTimeout(4_000, () => {
      if (!this.waiting) socket.destroy();
    });
    this.socket = socket;
    return socket;
  }

  /** Hands over a complete response (the app's answers are short ASCII with a Content-Length). */
  private answer(): void {
    const headEnd = this.received.indexOf("\r\n\r\n");
    if (headEnd < 0 || !this.waiting) return;
    const head = this.received.slice(0, headEnd);
    const length = /\r\ncontent-length: *(\d+)/i.exec(head);
    if (!length) {
      this.waiting.reject(new Error(`no Content-Length in ${head}`));
      return;
    }
    const end = headEnd + 4 + Number(length[1]);
    if (this.received.length < end) return;
    const text = this.received.slice(headEnd + 4, end);
    this.received = this.received.slice(end);
    const { resolve } = this.waiting;
    this.waiting = null;
    resolve({ status: Number(head.slice(9, 12)), text });
  }
}
