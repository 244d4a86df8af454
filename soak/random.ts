/**
 * A small seeded PRNG, so a soak run is reproducible from its `--seed`: every request's plan and every
 * upstream scenario it meets are derived from (seed, request index, attempt), not from arrival order.
 */
export type Random = () => number;

/** mulberry32: 32-bit state, good enough spread for picking scenarios, and trivially seedable. */
export function seeded(seed: number): Random {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Mixes several integers into one seed (FNV-1a over their 32-bit words). */
export function mixSeed(...parts: number[]): number {
  let hash = 0x811c9dc5;
  for (const part of parts) {
    for (let shift = 0; shift < 32; shift += 8) hash = Math.imul(hash ^ ((part >>> shift) & 0xff), 0x01000193);
  }
  return hash >>> 0;
}

export function integerBetween(random: Random, min: number, max: number): number {
  return min + Math.floor(random() * (max - min + 1));
}

export function pick<T>(random: Random, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)]!;
}

/** Picks from `[item, weight]` pairs in proportion to the weights. */
export function weighted<T>(random: Random, table: readonly (readonly [T, number])[]): T {
  const total = table.reduce((sum, [, weight]) => sum + weight, 0);
  let point = random() * total;
  for (const [item, weight] of table) {
    point -= weight;
    if (point < 0) return item;
  }
  return table[table.length - 1]![0];
}
