/**
 * Files as the fake Bot API receives them: grammY uploads a file as multipart/form-data, and
 * Telegram reads a photo only when it is an image.
 */

/** A file the bot uploaded (multipart), as the fake received it. */
export interface UploadedFile {
  filename: string;
  bytes: Uint8Array;
}

/**
 * A multipart call's parameters: a field naming its file part as `attach://<part>` holds that file
 * (an `UploadedFile`); other fields are strings, objects JSON-encoded as grammY sends them.
 */
export function uploadPayload(raw: Buffer, contentType: string): Record<string, unknown> {
  const boundary = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType);
  const parts = multipartParts(raw, boundary?.[1] ?? boundary?.[2] ?? "");
  const payload: Record<string, unknown> = {};
  for (const [name, part] of parts) {
    if (part.filename !== undefined) continue;
    const value = part.body.toString("utf8");
    const attached = /^attach:\/\/(.+)$/.exec(value);
    const file = attached ? parts.get(attached[1]!) : undefined;
    if (file) payload[name] = { filename: file.filename ?? "", bytes: new Uint8Array(file.body) };
    else if (/^[[{]/.test(value)) {
      try {
        payload[name] = JSON.parse(value);
      } catch {
        payload[name] = value;
      }
    } else payload[name] = value;
  }
  return payload;
}

/** PNG, JPEG or WebP, by their first bytes: Telegram refuses a photo it cannot read as an image. */
export function isImage(bytes: Uint8Array): boolean {
  const starts = (...sig: number[]) => sig.every((b, i) => bytes[i] === b);
  return starts(0x89, 0x50, 0x4e, 0x47) || starts(0xff, 0xd8, 0xff) || starts(0x52, 0x49, 0x46, 0x46);
}

/** The parts of a multipart/form-data body: name → bytes (and file name for a file part). */
function multipartParts(raw: Buffer, boundary: string): Map<string, { body: Buffer; filename?: string }> {
  const parts = new Map<string, { body: Buffer; filename?: string }>();
  if (boundary === "") return parts;
  const delimiter = Buffer.from(`--${boundary}`);
  let at = raw.indexOf(delimiter);
  while (at !== -1) {
    const start = at + delimiter.length;
    if (raw.subarray(start, start + 2).toString() === "--") break;
    const next = raw.indexOf(delimiter, start);
    if (next === -1) break;
    const part = raw.subarray(start + 2, next - 2);
    const headerEnd = part.indexOf("\r\n\r\n");
    const headers = part.subarray(0, headerEnd).toString("utf8");
    const name = /name="([^"]*)"/i.exec(headers)?.[1];
    const filename = /filename="?([^";\r\n]*)"?/i.exec(headers)?.[1];
    if (name !== undefined)
      parts.set(name, {
        body: part.subarray(headerEnd + 4),
        ...(filename !== undefined ? { filename } : {}),
      });
    at = next;
  }
  return parts;
}
