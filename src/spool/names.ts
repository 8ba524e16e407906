// Job names are byte strings: a file name may hold any byte but '/' and NUL,
// and it must survive claim, run and archive intact even when it is not valid
// UTF-8. Names travel as Buffers; their map key is the 'latin1' string (one
// char per byte, lossless and cheap); paths built from them are Buffers.

const decoder = new TextDecoder('utf-8', { fatal: true });

export type Name = Buffer;

export function key(name: Name): string {
  return name.toString('latin1');
}

export function fromKey(k: string): Name {
  return Buffer.from(k, 'latin1');
}

export function isUtf8(name: Name): boolean {
  try {
    decoder.decode(name);
    return true;
  } catch {
    return false;
  }
}

/** The name for people and JSON: exact when the bytes are UTF-8, else with U+FFFD. */
export function display(name: Name): string {
  return name.toString('utf8');
}

export function join(dir: Buffer | string, name: Buffer | string): Buffer {
  const d = typeof dir === 'string' ? Buffer.from(dir) : dir;
  const n = typeof name === 'string' ? Buffer.from(name) : name;
  return Buffer.concat([d, SLASH, n]);
}

const SLASH = Buffer.from('/');

/**
 * Cut a name to at most `max` bytes without splitting a UTF-8 sequence, so an
 * archive name (timestamp prefix + name + ".json") still fits NAME_MAX. The
 * record keeps the whole name.
 */
export function truncate(name: Name, max: number): Name {
  if (name.length <= max) return name;
  let end = max;
  // step back over continuation bytes (10xxxxxx) to a character start
  while (end > 0 && (name[end]! & 0xc0) === 0x80) end--;
  return name.subarray(0, end);
}
