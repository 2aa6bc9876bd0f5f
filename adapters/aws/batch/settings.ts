/** The batch functions' settings, read from the environment once per invocation (cheap; tests change them). */
export interface BatchSettings {
  /** MODELFN_BATCH_BUCKET: the only bucket batch reads and writes; unset, a record's own bucket is used. */
  bucket?: string;
  /** MODELFN_BATCH_INPUT_PREFIX (default `input/`): input keys are `<inputPrefix><model>/<path>.jsonl|.csv`. */
  inputPrefix: string;
  /** MODELFN_BATCH_OUTPUT_PREFIX (default `output/`). */
  outputPrefix: string;
  /** MODELFN_BATCH_STATE_MACHINE_ARN: where files too big for one invocation go. */
  stateMachineArn?: string;
  /** MODELFN_BATCH_INLINE_MAX_BYTES (default 50 MB): larger files go to the state machine at once. */
  inlineMaxBytes: number;
  /** MODELFN_BATCH_CHUNK_RECORDS (default 256): records per processChunk call, one tensor run each. */
  chunkRecords: number;
  /** MODELFN_BATCH_TIME_MARGIN_MS (default 10 s): stop starting work when less than this is left of the invocation. */
  timeMarginMs: number;
  /** MODELFN_BATCH_ID_FIELD (default `id`): the field naming a record, as `modelfn batch --id-field`. */
  idField: string;
}

/** A setting that cannot work; the invocation fails with this message (no record is touched). */
export class BatchConfigError extends Error {
  override readonly name = 'BatchConfigError';
}

function wholeNumber(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const value = env[name];
  if (value === undefined || value === '') return fallback;
  if (!/^\d+$/.test(value)) throw new BatchConfigError(`${name} must be a whole number, got "${value}"`);
  return Number(value);
}

function prefix(env: NodeJS.ProcessEnv, name: string, fallback: string): string {
  const value = env[name] || fallback;
  if (!value.endsWith('/') || value.startsWith('/') || value.split('/').slice(0, -1).some((segment) => segment === '' || segment === '.' || segment === '..')) {
    throw new BatchConfigError(`${name} must be a key prefix such as "${fallback}" (ending in "/", no empty, "." or ".." segments), got "${value}"`);
  }
  return value;
}

export function batchSettings(env: NodeJS.ProcessEnv = process.env): BatchSettings {
  const inputPrefix = prefix(env, 'MODELFN_BATCH_INPUT_PREFIX', 'input/');
  const outputPrefix = prefix(env, 'MODELFN_BATCH_OUTPUT_PREFIX', 'output/');
  // Outputs written under the input prefix would trigger the upload function again, for ever.
  if (outputPrefix.startsWith(inputPrefix) || inputPrefix.startsWith(outputPrefix)) {
    throw new BatchConfigError(`MODELFN_BATCH_INPUT_PREFIX ("${inputPrefix}") and MODELFN_BATCH_OUTPUT_PREFIX ("${outputPrefix}") must not contain one another`);
  }
  const chunkRecords = wholeNumber(env, 'MODELFN_BATCH_CHUNK_RECORDS', 256);
  if (chunkRecords < 1) throw new BatchConfigError('MODELFN_BATCH_CHUNK_RECORDS must be at least 1');
  return {
    bucket: env.MODELFN_BATCH_BUCKET || undefined,
    inputPrefix,
    outputPrefix,
    stateMachineArn: env.MODELFN_BATCH_STATE_MACHINE_ARN || undefined,
    inlineMaxBytes: wholeNumber(env, 'MODELFN_BATCH_INLINE_MAX_BYTES', 50 * 1024 * 1024),
    chunkRecords,
    timeMarginMs: wholeNumber(env, 'MODELFN_BATCH_TIME_MARGIN_MS', 10_000),
    idField: env.MODELFN_BATCH_ID_FIELD || 'id',
  };
}
