import type { Readable } from "node:stream";
import { Agent, type Dispatcher } from "undici";

/**
 * The `fetch` grammY calls the Bot API with. grammY reads nothing of a response but its JSON
 * (`res.json()`, whatever the status: the Bot API answers errors as JSON too), so each call is one
 * `dispatch` on a keep-alive agent whose handler gathers the body's bytes: no Request and Response
 * objects of a whole fetch, no body stream, and the response headers, which nothing reads, are never
 * parsed. Under a webhook's load every answer is one such call: node-fetch over `http.request`
 * (grammY's default on Node) took about a sixth of the app's busy time for them, and undici's
 * `request` (a body stream per call) still a tenth. A file upload's body is grammY's multipart
 * stream, which `dispatch` sends as it comes.
 */
export function createBotApiFetch(): typeof fetch {
  const agent = new Agent({ keepAliveTimeout: 30_000 });
  return (async (input: string | URL, init: RequestInit = {}) => {
    const url = String(input);
    // The origin and path of `https://host[:port]/path`, without a URL object per call.
    const pathStart = url.indexOf("/", url.indexOf("//") + 2);
    const body = await dispatchForBody(
      agent,
      {
        origin: url.slice(0, pathStart),
        path: url.slice(pathStart),
        method: (init.method ?? "GET") as Dispatcher.HttpMethod,
        headers: init.headers as Record<string, string>,
        body: init.body as string | Readable | null,
      },
      init.signal ?? undefined,
    );
    return { json: async () => JSON.parse(body.toString("utf8")) } as Response;
  }) as typeof fetch;
}

function dispatchForBody(
  agent: Agent,
  options: Dispatcher.DispatchOptions,
  signal: AbortSignal | undefined,
): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let onAbort: (() => void) | undefined;
    const forgetSignal = () => {
      if (onAbort) signal?.removeEventListener("abort", onAbort);
    };
    // undici's legacy handler shape: it is handed the raw header list, left unread here.
    const handler: Dispatcher.DispatchHandler = {
      onConnect(abort) {
        if (!signal) return;
        if (signal.aborted) return abort(signal.reason);
        onAbort = () => abort(signal.reason);
        signal.addEventListener("abort", onAbort, { once: true });
      },
      onHeaders: () => true,
      onData(chunk: Buffer) {
        chunks.push(chunk);
        return true;
      },
      onComplete() {
        forgetSignal();
        resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
      },
      onError(error) {
        forgetSignal();
        reject(error);
      },
    };
    agent.dispatch(options, handler);
  });
}
