import { type FileHandle, mkdir, open, readdir, readFile, rename, rm, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { MAX_RECORD_BYTES, type OutRecord, outRecordOfJson } from "./events.ts";

/** A run of spooled records, in order, and where the spool's head moves once they are on Kafka. */
export interface SpoolBatch {
  records: OutRecord[];
  /** Lines read, including any that were unreadable and skipped. */
  lines: number;
  end: Position;
}

interface Position {
  seq: number;
  offset: number;
}

interface Segment {
  seq: number;
  size: number;
}

const SEGMENT = /^(\d{12})\.jsonl$/;
const HEAD_FILE = "head.json";

/**
 * An append-only, bounded disk queue of records (JSON Lines, one record per line) that holds
 * events while Kafka is unreachable.
 *
 * Records live in numbered segment files; `head.json` remembers how far replay has got. A batch
 * is fsynced before append() resolves, so whatever it reports as appended survives a crash. The
 * head moves only after Kafka acknowledged the records before it, so a crash at worst replays a
 * batch twice: the spool is at-least-once, in order.
 *
 * The bound counts disk space: every segment file in full, including the replayed start of the
 * oldest one (at most one segment, an eighth of the limit), so the spool never uses more than
 * maxBytes.
 */
export class Spool {
  readonly dir: string;
  readonly maxBytes: number;
  readonly #rollBytes: number;
  #segments: Segment[];
  #head: Position;
  #events: number;
  #tail: FileHandle | undefined;
  /** An append found no room; cleared when replay frees space. */
  #overflowed = false;
  #lock: Promise<unknown> = Promise.resolve();
  #corrupt = 0;

  private constructor(dir: string, maxBytes: number, segments: Segment[], head: Position, events: number) {
    this.dir = dir;
    this.maxBytes = maxBytes;
    this.#rollBytes = Math.max(1, Math.min(Math.floor(maxBytes / 8), 16 * 1024 * 1024));
    this.#segments = segments;
    this.#head = head;
    this.#events = events;
  }

  /** Opens the spool in `dir`, recovering what a previous run left (torn last lines are cut). */
  static async open(dir: string, maxBytes: number): Promise<Spool> {
    // The events are the store's users' doings: readable by log-service's own account only.
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const names = (await readdir(dir)).filter((n) => SEGMENT.test(n)).sort();
    let segments: Segment[] = [];
    for (const name of names) {
      const data = await readFile(join(dir, name));
      // A crash can leave a partial last line; it was never reported appended, so it goes.
      const end = data.lastIndexOf(0x0a) + 1;
      if (end < data.length) await truncate(join(dir, name), end);
      segments.push({ seq: Number(name.slice(0, 12)), size: end });
    }
    let head = (await readHead(dir)) ?? { seq: segments[0]?.seq ?? 1, offset: 0 };
    const headSeq = head.seq;
    // Segments before the head were replayed already; a crash came before they were removed.
    for (const s of segments.filter((s) => s.seq < headSeq)) await rm(segmentPath(dir, s.seq));
    segments = segments.filter((s) => s.seq >= headSeq);
    const headSegment = segments[0];
    if (headSegment === undefined || headSegment.seq !== head.seq || head.offset > headSegment.size) {
      head = { seq: headSegment?.seq ?? head.seq, offset: 0 };
    } else if (head.offset > 0 && (await readFile(segmentPath(dir, head.seq)))[head.offset - 1] !== 0x0a) {
      // Only a line boundary is a valid head; anything else means head.json is not to be trusted.
      head.offset = 0;
    }
    // A fully replayed segment whose removal a crash interrupted.
    for (let s = segments[0]; s !== undefined && s.seq === head.seq && head.offset >= s.size; s = segments[0]) {
      await rm(segmentPath(dir, s.seq));
      segments.shift();
      head = { seq: segments[0]?.seq ?? s.seq + 1, offset: 0 };
    }
    let events = 0;
    for (const s of segments) {
      const data = await readFile(segmentPath(dir, s.seq));
      const from = s.seq === head.seq ? head.offset : 0;
      for (let i = data.indexOf(0x0a, from); i !== -1; i = data.indexOf(0x0a, i + 1)) events++;
    }
    return new Spool(dir, maxBytes, segments, head, events);
  }

  /** Disk space used. */
  get bytes(): number {
    return this.#segments.reduce((n, s) => n + s.size, 0);
  }

  /** Records waiting for replay. */
  get events(): number {
    return this.#events;
  }

  get empty(): boolean {
    return this.#events === 0;
  }

  /** Whether the last append had to drop records and no space has been freed since. */
  get full(): boolean {
    return this.#overflowed || this.bytes >= this.maxBytes;
  }

  /** Lines that could not be parsed on replay and were skipped (only after disk corruption). */
  get corrupt(): number {
    return this.#corrupt;
  }

  /**
   * Appends the records that fit, in order, and fsyncs them. Resolves with how many leading
   * records were appended; the rest did not fit.
   */
  append(records: readonly OutRecord[]): Promise<number> {
    return this.#locked(async () => {
      let room = this.maxBytes - this.bytes;
      let fit = 0;
      for (const r of records) {
        if (r.bytes + 1 > room) break;
        room -= r.bytes + 1;
        fit++;
      }
      if (fit < records.length) this.#overflowed = true;
      if (fit === 0) return 0;
      const tail = await this.#tailForAppend();
      const text = `${records
        .slice(0, fit)
        .map((r) => r.value)
        .join("\n")}\n`;
      const data = Buffer.from(text);
      let written = 0;
      while (written < data.length) {
        written += (await tail.handle.write(data, written, data.length - written)).bytesWritten;
      }
      await tail.handle.datasync();
      tail.segment.size += data.length;
      this.#events += fit;
      return fit;
    });
  }

  /** The oldest records not yet replayed, at most maxRecords and (beyond the first) maxBytes. */
  async read(maxRecords: number, maxBytes: number): Promise<SpoolBatch | undefined> {
    const head = { ...this.#head };
    const segment = this.#segments.find((s) => s.seq === head.seq);
    if (segment === undefined || head.offset >= segment.size) return undefined;
    const length = Math.min(segment.size - head.offset, Math.max(maxBytes, MAX_RECORD_BYTES) + 1);
    const data = Buffer.alloc(length);
    const fh = await open(segmentPath(this.dir, head.seq), "r");
    try {
      let got = 0;
      while (got < length) {
        const { bytesRead } = await fh.read(data, got, length - got, head.offset + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
    } finally {
      await fh.close();
    }
    const records: OutRecord[] = [];
    let lines = 0;
    let start = 0;
    let bytes = 0;
    for (let nl = data.indexOf(0x0a); nl !== -1 && lines < maxRecords; nl = data.indexOf(0x0a, start)) {
      if (lines > 0 && bytes + (nl - start) > maxBytes) break;
      bytes += nl - start;
      lines++;
      try {
        records.push(outRecordOfJson(data.toString("utf8", start, nl)));
      } catch {
        this.#corrupt++;
      }
      start = nl + 1;
    }
    if (lines === 0) return undefined;
    return { records, lines, end: { seq: head.seq, offset: head.offset + start } };
  }

  /** Moves the head past a batch that Kafka acknowledged, freeing what was fully replayed. */
  commit(batch: SpoolBatch): Promise<void> {
    return this.#locked(async () => {
      this.#head = { ...batch.end };
      this.#events -= batch.lines;
      const segment = this.#segments[0];
      if (segment !== undefined && segment.seq === this.#head.seq && this.#head.offset >= segment.size) {
        const isTail = this.#segments.length === 1;
        if (isTail) {
          await this.#tail?.close();
          this.#tail = undefined;
        }
        this.#segments.shift();
        this.#head = { seq: this.#segments[0]?.seq ?? segment.seq + 1, offset: 0 };
        await writeHead(this.dir, this.#head);
        await rm(segmentPath(this.dir, segment.seq), { force: true });
        this.#overflowed = false;
      } else {
        await writeHead(this.dir, this.#head);
      }
    });
  }

  async close(): Promise<void> {
    await this.#locked(async () => {
      await this.#tail?.close();
      this.#tail = undefined;
    });
  }

  async #tailForAppend(): Promise<{ handle: FileHandle; segment: Segment }> {
    let segment = this.#segments.at(-1);
    const mustRoll = segment !== undefined && segment.size >= this.#rollBytes && segment.size > 0;
    if (segment === undefined || mustRoll) {
      await this.#tail?.close();
      this.#tail = undefined;
      segment = { seq: segment === undefined ? this.#head.seq : segment.seq + 1, size: 0 };
      this.#segments.push(segment);
    }
    if (this.#tail === undefined) {
      this.#tail = await open(segmentPath(this.dir, segment.seq), "a", 0o600);
      // The new file's directory entry must survive a crash as well as its contents.
      await syncDir(this.dir);
    }
    return { handle: this.#tail, segment };
  }

  #locked<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#lock.then(fn, fn);
    this.#lock = run.catch(() => {});
    return run;
  }
}

function segmentPath(dir: string, seq: number): string {
  return join(dir, `${String(seq).padStart(12, "0")}.jsonl`);
}

async function readHead(dir: string): Promise<Position | undefined> {
  try {
    const head = JSON.parse(await readFile(join(dir, HEAD_FILE), "utf8")) as Partial<Position>;
    const { seq, offset } = head;
    if (Number.isSafeInteger(seq) && Number.isSafeInteger(offset) && (seq as number) >= 1 && (offset as number) >= 0) {
      return { seq: seq as number, offset: offset as number };
    }
  } catch {
    // Missing or unreadable: replay from the oldest segment (duplicates, never loss).
  }
  return undefined;
}

// Not fsynced: losing an update only replays a batch again, and the rename is atomic.
async function writeHead(dir: string, head: Position): Promise<void> {
  const tmp = join(dir, `${HEAD_FILE}.tmp`);
  await writeFile(tmp, JSON.stringify(head), { mode: 0o600 });
  await rename(tmp, join(dir, HEAD_FILE));
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
