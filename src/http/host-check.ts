// The Host header check (DNS-rebinding defence): a web page on another site
// can make a browser send requests to 127.0.0.1:8080 under the page's own
// host name (its DNS answer rebound to 127.0.0.1) and read the answers as
// same-origin. Such a request carries the attacker's name in Host, so only
// requests that name this server are served: a loopback name (any port), or
// the address it listens on with its port. Listening on every address
// (0.0.0.0, ::), the addresses of the machine's interfaces count as that.

import os from 'node:os';

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);
const WILDCARD = new Set(['0.0.0.0', '::', '[::]', '']);

/** `name[:port]` or `[v6]:port`, lower-cased; null when it is no host. */
function parseHost(header: string): { name: string; port: string | null } | null {
  const m = /^(\[[0-9a-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(header.trim().toLowerCase());
  return m ? { name: m[1]!, port: m[2] ?? null } : null;
}

function bracket(address: string): string {
  return address.includes(':') ? `[${address.toLowerCase()}]` : address.toLowerCase();
}

function interfaceAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) out.add(bracket(a.address.replace(/%.*$/, '')));
  }
  return out;
}

/**
 * A check for Host headers of a server listening on `listenHost`; `port()`
 * is the port it actually listens on (known only once it listens).
 */
export function hostChecker(listenHost: string, port: () => number): (header: string | undefined) => boolean {
  const listen = bracket(listenHost);
  return (header) => {
    if (header === undefined) return false;
    const h = parseHost(header);
    if (!h) return false;
    if (LOOPBACK.has(h.name)) return true;
    const p = port();
    if (h.port === null ? p !== 80 : Number(h.port) !== p) return false;
    if (WILDCARD.has(listen)) return interfaceAddresses().has(h.name);
    return h.name === listen;
  };
}
