/**
 * A count with its noun, for the English texts of the admin chat and the CLI: `1 payment`,
 * `3 payments`. `plural` for nouns that do not just take an s (`match`, `matches`).
 */
export function counted(n: number, noun: string, plural = `${noun}s`): string {
  return `${n} ${n === 1 ? noun : plural}`;
}
