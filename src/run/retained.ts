// A bounded map of results that outlive what produced them (the exit code of
// an ended job, whether a message was received), each with an owner whose end
// drops them all. The oldest entry goes first when the bound is reached, so
// memory stays bounded however long the manager runs.

export class Retained<V> {
  private readonly map = new Map<string, { value: V; owner: string | null }>();
  private readonly byOwner = new Map<string, Set<string>>();

  constructor(private readonly cap: number, private readonly onEvict?: (id: string) => void) {}

  get size(): number { return this.map.size; }

  get(id: string): V | undefined { return this.map.get(id)?.value; }

  has(id: string): boolean { return this.map.has(id); }

  set(id: string, value: V, owner: string | null): void {
    this.delete(id);
    while (this.map.size >= this.cap) {
      const oldest = this.map.keys().next().value as string;
      this.delete(oldest);
      this.onEvict?.(oldest);
    }
    this.map.set(id, { value, owner });
    if (owner !== null) {
      let set = this.byOwner.get(owner);
      if (!set) this.byOwner.set(owner, (set = new Set()));
      set.add(id);
    }
  }

  delete(id: string): void {
    const e = this.map.get(id);
    if (!e) return;
    this.map.delete(id);
    if (e.owner !== null) {
      const set = this.byOwner.get(e.owner);
      set?.delete(id);
      if (set?.size === 0) this.byOwner.delete(e.owner);
    }
  }

  /** Drops every entry owned by `owner`. */
  dropOwner(owner: string): void {
    const set = this.byOwner.get(owner);
    if (!set) return;
    this.byOwner.delete(owner);
    for (const id of set) this.map.delete(id);
  }

  clear(): void {
    this.map.clear();
    this.byOwner.clear();
  }
}
