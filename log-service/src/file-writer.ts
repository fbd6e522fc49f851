import { type FileHandle, mkdir, open } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "@merch/kit";
import type { Counters } from "./counters.ts";
import type { OutRecord } from "./events.ts";
import type { SinkStatus, Writer } from "./sink.ts";

export const CHANNEL_FILE = "log-channel.jsonl";

/**
 * Without a broker (local runs, tests of other services) the log channel is a JSON Lines file:
 * one record per line, the same JSON as on Kafka, fsynced before events count as accepted.
 */
export class FileWriter implements Writer {
  readonly path: string;
  readonly #file: FileHandle;
  readonly #counters: Counters;
  readonly #log: Logger;
  #healthy = true;
  #listeners: (() => void)[] = [];
  /** Bytes of whole lines written; a failed write is cut back to this. */
  #size: number;

  private constructor(path: string, file: FileHandle, size: number, counters: Counters, logger: Logger) {
    this.path = path;
    this.#file = file;
    this.#size = size;
    this.#counters = counters;
    this.#log = logger;
  }

  static async open(dataDir: string, counters: Counters, logger: Logger): Promise<FileWriter> {
    await mkdir(dataDir, { recursive: true });
    const path = join(dataDir, CHANNEL_FILE);
    // The events are the store's users' doings: readable by log-service's own account only.
    const file = await open(path, "a", 0o600);
    const { size } = await file.stat();
    logger.info({ path }, "no KAFKA_BROKERS: writing the log channel to a file");
    return new FileWriter(path, file, size, counters, logger);
  }

  async write(records: readonly OutRecord[]): Promise<number> {
    const data = Buffer.from(`${records.map((r) => r.value).join("\n")}\n`);
    try {
      let written = 0;
      while (written < data.length) {
        written += (await this.#file.write(data, written, data.length - written)).bytesWritten;
      }
      await this.#file.datasync();
      this.#size += data.length;
      this.#counters.published += records.length;
      this.#setHealthy(true);
      return records.length;
    } catch (err) {
      // The events count as dropped and their client resends them; a partial line must not
      // stay to corrupt the next one.
      this.#setHealthy(false);
      await this.#file.truncate(this.#size).catch(() => {});
      this.#log.error({ err }, `writing ${this.path} failed, events dropped`);
      return 0;
    }
  }

  status(): SinkStatus {
    return {
      sink: "file",
      connected: this.#healthy,
      accepting: this.#healthy,
      spool: { bytes: 0, events: 0, max_bytes: 0 },
    };
  }

  onChange(listener: () => void): void {
    this.#listeners.push(listener);
  }

  #setHealthy(healthy: boolean): void {
    if (this.#healthy === healthy) return;
    this.#healthy = healthy;
    for (const listener of this.#listeners) listener();
  }

  async close(): Promise<void> {
    await this.#file.close();
  }
}
