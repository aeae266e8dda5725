/**
 * Address lists as operators write them: single addresses and ranges in CIDR notation
 * (`196.201.214.0/24`, `2001:db8::/32`), IPv4 or IPv6. Plain code (no `node:net`): the Worker
 * build reads the same lists.
 */

interface Parsed {
  bits: bigint;
  width: 32 | 128;
}

function parseIpv4(text: string): bigint | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  let value = 0n;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part) || Number(part) > 255) return null;
    value = (value << 8n) | BigInt(Number(part));
  }
  return value;
}

function parseIpv6(text: string): bigint | null {
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const groupsOf = (half: string) => (half === "" ? [] : half.split(":"));
  const head = groupsOf(halves[0]!);
  const tail = halves.length === 2 ? groupsOf(halves[1]!) : [];
  // An IPv4 tail (`::ffff:1.2.3.4`) counts as two groups.
  const last = tail.length > 0 ? tail : head;
  const v4 = last.length > 0 && last[last.length - 1]!.includes(".") ? parseIpv4(last.pop()!) : null;
  if (v4 !== null) last.push((v4 >> 16n).toString(16), (v4 & 0xffffn).toString(16));
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  let value = 0n;
  for (const group of [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...tail]) {
    if (!/^[0-9a-f]{1,4}$/i.test(group)) return null;
    value = (value << 16n) | BigInt(Number.parseInt(group, 16));
  }
  return value;
}

function parseAddress(text: string): Parsed | null {
  const address = text.trim();
  if (address.includes(":")) {
    const bits = parseIpv6(address);
    if (bits === null) return null;
    // An IPv4-mapped IPv6 address is that IPv4 address (the socket of a dual-stack server says so).
    if (bits >> 32n === 0xffffn) return { bits: bits & 0xffffffffn, width: 32 };
    return { bits, width: 128 };
  }
  const bits = parseIpv4(address);
  return bits === null ? null : { bits, width: 32 };
}

interface Range extends Parsed {
  prefix: number;
}

function parseRange(entry: string): Range | null {
  const [address, prefix, ...rest] = entry.trim().split("/");
  if (rest.length > 0 || address === undefined) return null;
  const parsed = parseAddress(address);
  if (!parsed) return null;
  if (prefix === undefined) return { ...parsed, prefix: parsed.width };
  if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > parsed.width) return null;
  return { ...parsed, prefix: Number(prefix) };
}

/** An address or a CIDR range this module reads (config.ts refuses anything else at start). */
export const isAddressOrRange = (entry: string): boolean => parseRange(entry) !== null;

export type AddressMatcher = (address: string) => boolean;

/** Whether an address is one of `entries` or within one of their ranges. */
export function addressMatcher(entries: readonly string[]): AddressMatcher {
  const ranges = entries.map(parseRange).filter((r): r is Range => r !== null);
  return (text) => {
    const address = parseAddress(text);
    if (!address) return false;
    return ranges.some((range) => {
      if (range.width !== address.width) return false;
      const shift = BigInt(range.width - range.prefix);
      return range.bits >> shift === address.bits >> shift;
    });
  };
}
