import { once } from 'node:events';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { ObjectStore, TextWriter } from '../../handlers/index.ts';
import { nodeCrypto } from '../../handlers/builtins.ts';

/**
 * The local server's ObjectStore: batch jobs' keys are paths under one folder (MODELFN_BATCH_DIR, default
 * `<MODELFN_DATA_DIR>/objects`). The core has already refused keys with "..", empty or "." segments, backslashes
 * and control characters, so a key cannot name a file outside the folder. An output appears whole: it is written
 * to a temporary file beside it and renamed into place at the end.
 */
export class FileObjectStore implements ObjectStore {
  constructor(readonly root: string) {}

  private pathOf(key: string): string {
    return path.join(this.root, ...key.split('/'));
  }

  async read(key: string): Promise<Readable | undefined> {
    const file = this.pathOf(key);
    try {
      if (!(await stat(file)).isFile()) return undefined;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
      throw error;
    }
    return createReadStream(file);
  }

  writer(key: string): TextWriter {
    return new FileTextWriter(this.pathOf(key));
  }

  async remove(key: string): Promise<void> {
    await rm(this.pathOf(key), { force: true });
  }
}

class FileTextWriter implements TextWriter {
  private stream: WriteStream | undefined;
  private readonly temporary: string;

  constructor(private readonly file: string) {
    this.temporary = `${file}.${nodeCrypto().randomUUID()}.tmp`;
  }

  private async open(): Promise<WriteStream> {
    if (!this.stream) {
      await mkdir(path.dirname(this.file), { recursive: true });
      this.stream ??= createWriteStream(this.temporary);
    }
    return this.stream;
  }

  async write(text: string): Promise<void> {
    const stream = await this.open();
    if (text !== '' && !stream.write(text)) await once(stream, 'drain');
  }

  async end(): Promise<void> {
    const stream = await this.open();
    stream.end();
    await finished(stream);
    await rename(this.temporary, this.file);
  }

  async abort(): Promise<void> {
    this.stream?.destroy();
    await rm(this.temporary, { force: true });
  }
}
