/**
 * TLS server names against the patterns a config lists (`api.example.com`,
 * `*.example.com`): which frontend on a shared address, or which
 * certificate of a terminating frontend, a client's name picks.
 *
 * @module
 */

/**
 * Whether a server name matches a pattern: the same name, or for
 * `*.example.com` any name under example.com (not example.com itself).
 *
 * @param pattern a name or `*.` wildcard, lowercase
 * @param name the client's server name, lowercase
 * @returns true when it matches
 */
export function matchesServerName(pattern: string, name: string): boolean {
  if (!pattern.startsWith("*.")) return pattern === name;
  return name.length > pattern.length - 1 && name.endsWith(pattern.slice(1));
}

/**
 * The item whose patterns match a name best: one listing the name itself,
 * else the one with the longest matching wildcard; the first such in order.
 *
 * @param items what to choose from
 * @param patternsOf an item's patterns (undefined: none)
 * @param name the client's server name, if it sent one
 * @returns the best item, or undefined when none matches
 */
export function bestMatch<T>(
  items: readonly T[],
  patternsOf: (item: T) => readonly string[] | undefined,
  name: string | undefined,
): T | undefined {
  if (name === undefined) return undefined;
  let best: T | undefined;
  let bestLength = -1;
  for (const item of items) {
    for (const pattern of patternsOf(item) ?? []) {
      if (!matchesServerName(pattern, name)) continue;
      const length = pattern.startsWith("*.") ? pattern.length : Infinity;
      if (length > bestLength) {
        best = item;
        bestLength = length;
      }
    }
  }
  return best;
}
