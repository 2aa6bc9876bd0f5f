import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { csvCell, processChunk, recordFromCsvRow, recordFromJsonLine, type BatchRecord } from '../handlers/batch.ts';
import { UnavailableError } from '../handlers/errors.ts';
import { loadModelRepository, type ModelRepository } from '../handlers/model-repository.ts';
import type { ModelService } from '../handlers/model-service.ts';
import { FEATURE_NAMES, generateUserDays, toFeatures } from '../scripts/anomaly-data.ts';

let repository: ModelRepository;
let anomaly: ModelService;

beforeAll(async () => {
  repository = await loadModelRepository();
  anomaly = repository.get('anomaly');
});

afterAll(() => repository?.dispose());

const days = generateUserDays(40, 99);
const goodRecord = (index: number): BatchRecord => ({ line: index + 1, id: `u${index}`, value: toFeatures(days[index]!) });

describe('processChunk', () => {
  it('fails one bad record alone and predicts the rest in one run, in input order', async () => {
    const records = days.map((_, index) => goodRecord(index));
    const { failed_logins: _dropped, ...missingFeature } = toFeatures(days[7]!);
    records[7] = { line: 8, id: 'u7', value: missingFeature };
    const predict = vi.spyOn(anomaly, 'predict');
    const result = await processChunk(anomaly, records);

    expect(result.errors).toEqual([{ line: 8, id: 'u7', error: 'line 8 is missing required property "failed_logins"' }]);
    expect(result.results.map((r) => r.line)).toEqual(records.filter((_, i) => i !== 7).map((r) => r.line));
    expect(result.results.map((r) => r.id)).toEqual(records.filter((_, i) => i !== 7).map((r) => r.id));
    expect(result.predictCalls).toBe(1);
    expect(predict).toHaveBeenCalledTimes(1);
    expect((predict.mock.calls[0]![0] as unknown[]).length).toBe(39);
    predict.mockRestore();

    // The same predictions as the real-time path gives the same instances.
    const direct = await anomaly.predict(records.filter((_, i) => i !== 7).map((r) => r.value));
    expect(result.results.map((r) => r.prediction)).toEqual(direct.predictions);
  });

  it('reports records the reader could not parse without predicting them', async () => {
    const records: BatchRecord[] = [goodRecord(0), { line: 2, error: 'line 2 is not valid JSON: Unexpected end of JSON input' }, goodRecord(2)];
    const result = await processChunk(anomaly, records);
    expect(result.errors).toEqual([{ line: 2, error: 'line 2 is not valid JSON: Unexpected end of JSON input' }]);
    expect(result.results.map((r) => r.line)).toEqual([1, 3]);
  });

  it('makes no predict call when no record is valid', async () => {
    const result = await processChunk(anomaly, [{ line: 1, value: { logins: 'many' } }, { line: 2, error: 'unreadable' }]);
    expect(result.predictCalls).toBe(0);
    expect(result.results).toEqual([]);
    expect(result.errors.map((e) => e.line)).toEqual([1, 2]);
  });

  it('falls back to one record at a time when the model rejects the batch, so only the culprit fails', async () => {
    const vad = repository.get('vad');
    const wav = readFileSync(new URL('./fixtures/speech-16k.wav', import.meta.url)).toString('base64');
    // Valid by schema (a non-empty string), but not a WAV file: the model's own decoding throws an InputError.
    const records: BatchRecord[] = [
      { line: 1, id: 'a', value: { wav } },
      { line: 2, id: 'b', value: { wav: 'bm90IGEgd2F2' } },
      { line: 3, id: 'c', value: { wav } },
    ];
    const result = await processChunk(vad, records);
    expect(result.errors).toHaveLength(1);
    expect(result.errors[0]).toMatchObject({ line: 2, id: 'b' });
    expect(result.errors[0]!.error).toMatch(/^line 2\.wav: not a RIFF WAVE file/);
    expect(result.results.map((r) => r.id)).toEqual(['a', 'c']);
    expect((result.results[0]!.prediction as { segments: unknown[] }).segments.length).toBeGreaterThan(0);
    expect(result.predictCalls).toBe(4); // the failed batch, then one call per record
  });

  it('lets errors that are not about the input propagate (the caller treats them as fatal)', async () => {
    const broken = {
      instanceCheck: async () => () => undefined,
      predict: () => Promise.reject(new UnavailableError('model x is not ready: model file not found')),
    } as unknown as ModelService;
    await expect(processChunk(broken, [goodRecord(0), goodRecord(1)])).rejects.toThrow(/not ready/);
  });
});

describe('record readers', () => {
  it('reads a JSONL line: the id field names the record and leaves the instance, else the line number does', () => {
    expect(recordFromJsonLine('{"id":"u1","logins":3}', 5)).toEqual({ line: 5, id: 'u1', value: { logins: 3 } });
    expect(recordFromJsonLine('{"user":7,"logins":3}', 5, 'user')).toEqual({ line: 5, id: 7, value: { logins: 3 } });
    expect(recordFromJsonLine('{"logins":3}', 5)).toEqual({ line: 5, id: 5, value: { logins: 3 } });
    expect(recordFromJsonLine('[1,2]', 6)).toEqual({ line: 6, id: 6, value: [1, 2] });
    expect(recordFromJsonLine('   ', 7)).toBeUndefined();
    expect(recordFromJsonLine('{"id":"u1",', 8)).toMatchObject({ line: 8, error: expect.stringMatching(/^line 8 is not valid JSON: /) });
    expect(recordFromJsonLine('{"id":{"a":1}}', 9)).toEqual({ line: 9, error: 'line 9: id field "id" must be a string or a number, got {"a":1}' });
    // "__proto__" from JSON stays an own property of the instance (and is not a prototype).
    const record = recordFromJsonLine('{"id":1,"__proto__":{"x":1}}', 10)!;
    expect(Object.keys(record.value as object)).toEqual(['__proto__']);
    expect(Object.getPrototypeOf(record.value)).toBe(Object.prototype);
  });

  it('reads a CSV row against the header: numbers become numbers, empty cells are missing', () => {
    const header = ['id', 'logins', 'note', 'ratio'];
    expect(recordFromCsvRow(header, ['u1', '3', 'hello', '.5'], 2)).toEqual({ line: 2, id: 'u1', value: { logins: 3, note: 'hello', ratio: 0.5 } });
    expect(recordFromCsvRow(header, ['', '3', '', '1e3'], 3)).toEqual({ line: 3, id: 3, value: { logins: 3, ratio: 1000 } });
    expect(recordFromCsvRow(header, ['00123', '-2', ' 4 ', 'x'], 4)).toEqual({ line: 4, id: '00123', value: { logins: -2, note: 4, ratio: 'x' } });
    expect(recordFromCsvRow(header, ['42', '1', '', ''], 5).id).toBe(42);
    expect(recordFromCsvRow(header, ['u1', '3'], 6)).toEqual({ line: 6, error: 'line 6 has 2 fields, the header has 4' });
    expect(recordFromCsvRow(['logins'], ['3'], 7)).toEqual({ line: 7, id: 7, value: { logins: 3 } });
    expect([csvCell('12'), csvCell('1.5e-3'), csvCell('+4'), csvCell('0x10'), csvCell('1,000'), csvCell('')]).toEqual([12, 0.0015, 4, '0x10', '1,000', undefined]);
  });

  it('agrees between JSONL and CSV for the same anomaly row', () => {
    const features = toFeatures(days[0]!);
    const header = ['id', ...FEATURE_NAMES];
    const fromCsv = recordFromCsvRow(header, ['u0', ...FEATURE_NAMES.map((name) => String(features[name]))], 2);
    const fromJson = recordFromJsonLine(JSON.stringify({ id: 'u0', ...features }), 1)!;
    expect(fromCsv.value).toEqual(fromJson.value);
    expect(fromCsv.id).toBe(fromJson.id);
  });
});
