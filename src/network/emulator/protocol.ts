/**
 * RouterOS API framing: every word is a length prefix and bytes, a sentence ends with an empty word.
 * Bytes are latin1 on both sides so the emulator is byte-transparent for the client's win1252.
 */

export function encodeLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  if (length < 0x4000) return Buffer.from([(length >> 8) | 0x80, length & 0xff]);
  if (length < 0x200000) return Buffer.from([(length >> 16) | 0xc0, (length >> 8) & 0xff, length & 0xff]);
  if (length < 0x10000000) {
    return Buffer.from([(length >>> 24) | 0xe0, (length >> 16) & 0xff, (length >> 8) & 0xff, length & 0xff]);
  }
  const out = Buffer.alloc(5);
  out[0] = 0xf0;
  out.writeUInt32BE(length, 1);
  return out;
}

export function encodeSentence(words: readonly string[]): Buffer {
  const parts: Buffer[] = [];
  for (const word of words) {
    const bytes = Buffer.from(word, "latin1");
    parts.push(encodeLength(bytes.length), bytes);
  }
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

/** Collects socket chunks and yields whole sentences, whatever the chunk boundaries. */
export class SentenceReader {
  private buffer: Buffer = Buffer.alloc(0);
  private words: string[] = [];

  push(chunk: Buffer): string[][] {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    const sentences: string[][] = [];
    let offset = 0;
    for (;;) {
      const header = decodeLength(this.buffer, offset);
      if (!header) break;
      const [size, length] = header;
      if (offset + size + length > this.buffer.length) break;
      const start = offset + size;
      offset = start + length;
      if (length === 0) {
        if (this.words.length > 0) sentences.push(this.words);
        this.words = [];
      } else {
        this.words.push(this.buffer.toString("latin1", start, offset));
      }
    }
    this.buffer = this.buffer.subarray(offset);
    return sentences;
  }
}

function decodeLength(data: Buffer, offset: number): [number, number] | null {
  const available = data.length - offset;
  if (available < 1) return null;
  const b = data[offset]!;
  if ((b & 0x80) === 0) return [1, b];
  if ((b & 0xc0) === 0x80) return available < 2 ? null : [2, ((b & 0x3f) << 8) | data[offset + 1]!];
  if ((b & 0xe0) === 0xc0) {
    return available < 3 ? null : [3, ((b & 0x1f) << 16) | (data[offset + 1]! << 8) | data[offset + 2]!];
  }
  if ((b & 0xf0) === 0xe0) {
    if (available < 4) return null;
    return [
      4,
      (b & 0x0f) * 0x1000000 + ((data[offset + 1]! << 16) | (data[offset + 2]! << 8) | data[offset + 3]!),
    ];
  }
  return available < 5 ? null : [5, data.readUInt32BE(offset + 1)];
}

/**
 * One reply sentence as RouterOS sends it: the reply word, then the command's `.tag` (when it had
 * one), then the attributes.
 */
export function encodeReply(words: readonly string[], tag?: string): Buffer {
  if (tag === undefined || words.length === 0) return encodeSentence(words);
  return encodeSentence([words[0]!, `.tag=${tag}`, ...words.slice(1)]);
}
