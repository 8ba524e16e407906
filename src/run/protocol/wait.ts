// A pending `waitjobs`/`wait`/`killjobs`/`waitrecv`: it is answered when
// the items it waits for end, or at its timeout, with
// `S ID OUTCOME …` in the order asked, leaving out the ids `pending` does
// not know (unknown ids, and those of another family, look the same).

export class Wait {
  readonly outcomes = new Map<string, string>();
  /** the waiter sets it is in, to leave them once answered */
  readonly sets: Set<Wait>[] = [];
  timer: NodeJS.Timeout | null = null;
  remaining = 0;
  answered = false;

  constructor(
    readonly ids: string[],
    readonly first: boolean,
    private readonly pending: (id: string) => boolean,
    private readonly resolve: (answer: string) => void,
  ) {}

  /** Waits on an item still in progress: `set` is where its waiters are kept. */
  watch(set: Set<Wait>): void {
    set.add(this);
    this.sets.push(set);
    this.remaining++;
  }

  /** An item it waits for ended with `outcome`. */
  done(id: string, outcome: string): void {
    if (this.answered || this.outcomes.has(id)) return;
    this.outcomes.set(id, outcome);
    this.remaining--;
    if (this.first || this.remaining <= 0) this.answer();
  }

  /** Answer with the outcomes known now (`T` for an item still pending). */
  answer(): void {
    if (this.answered) return;
    let answer = 'S';
    for (const id of this.ids) {
      const o = this.outcomes.get(id) ?? (this.pending(id) ? 'T' : undefined);
      if (o !== undefined) answer += ` ${id} ${o}`;
    }
    this.reply(answer);
  }

  cancel(answer: string): void {
    if (!this.answered) this.reply(answer);
  }

  private reply(answer: string): void {
    this.answered = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const s of this.sets) s.delete(this);
    this.sets.length = 0;
    this.resolve(answer);
  }
}
