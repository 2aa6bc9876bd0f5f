import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHttpApp, type HttpApp } from '../handlers/http-app.ts';
import { loadModelRepository, type ModelRepository } from '../handlers/model-repository.ts';
import { identityModel, writeModelRepository, type ElementType } from './support/onnx-models.ts';

// Every OIP datatype through a real onnxruntime Identity model: what goes in must come back out.
const DATATYPES: { oip: string; ort: ElementType; data: unknown[]; expected?: unknown[] }[] = [
  { oip: 'BOOL', ort: 'bool', data: [true, false, true, true] },
  { oip: 'UINT8', ort: 'uint8', data: [0, 1, 200, 255] },
  { oip: 'UINT16', ort: 'uint16', data: [0, 1, 40000, 65535] },
  { oip: 'UINT32', ort: 'uint32', data: [0, 1, 4e9, 4294967295] },
  { oip: 'UINT64', ort: 'uint64', data: [0, 1, 2 ** 40, 9007199254740991] },
  { oip: 'INT8', ort: 'int8', data: [-128, -1, 0, 127] },
  { oip: 'INT16', ort: 'int16', data: [-32768, -1, 0, 32767] },
  { oip: 'INT32', ort: 'int32', data: [-2147483648, -1, 0, 2147483647] },
  { oip: 'INT64', ort: 'int64', data: [-(2 ** 40), -1, 0, 9007199254740991] },
  { oip: 'FP16', ort: 'float16', data: [0.5, -2, 1024, 0.1], expected: [0.5, -2, 1024, 0.0999755859375] },
  { oip: 'FP32', ort: 'float32', data: [0.5, -2.25, 3e10, 0.1], expected: [0.5, -2.25, Math.fround(3e10), Math.fround(0.1)] },
  { oip: 'FP64', ort: 'float64', data: [0.1, -2.5e-300, 1e300, 3] },
  { oip: 'BYTES', ort: 'string', data: ['a', '', 'héllo', '{"json":1}'] },
];

let repository: ModelRepository;
let app: HttpApp;

async function infer(model: string, body: unknown) {
  const response = await app.handle({ method: 'POST', url: `/v2/models/${model}/infer`, headers: {}, body: JSON.stringify(body) });
  return { status: response.status, body: JSON.parse(response.body) };
}

beforeAll(async () => {
  const dir = writeModelRepository([
    ...DATATYPES.map((type) => ({ name: `id-${type.ort}`, onnx: identityModel([{ name: 'x', type: type.ort, dims: ['batch', 2] }]) })),
    {
      name: 'two-inputs',
      onnx: identityModel([
        { name: 'a', type: 'float32', dims: ['batch', 3] },
        { name: 'b', type: 'int64', dims: ['batch'] },
      ]),
    },
  ]);
  repository = await loadModelRepository({ dir });
  app = createHttpApp({ repository });
});

afterAll(() => repository.dispose());

describe('OIP v2 codec on real onnxruntime sessions', () => {
  it.each(DATATYPES)('round-trips $oip through the model', async ({ oip, ort, data, expected }) => {
    const { status, body } = await infer(`id-${ort}`, { id: 'req-1', inputs: [{ name: 'x', shape: [2, 2], datatype: oip, data }] });
    expect(status).toBe(200);
    expect(body).toEqual({
      model_name: `id-${ort}`,
      model_version: '1',
      id: 'req-1',
      outputs: [{ name: 'x_out', datatype: oip, shape: [2, 2], data: expected ?? data }],
    });
  });

  it('accepts nested row-major data', async () => {
    const { status, body } = await infer('id-float32', { inputs: [{ name: 'x', shape: [2, 2], datatype: 'FP32', data: [[1, 2], [3, 4]] }] });
    expect(status).toBe(200);
    expect(body.outputs[0].data).toEqual([1, 2, 3, 4]);
  });

  it('returns only the outputs asked for', async () => {
    const { body } = await infer('two-inputs', {
      inputs: [
        { name: 'a', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] },
        { name: 'b', shape: [1], datatype: 'INT64', data: [7] },
      ],
      outputs: [{ name: 'b_out' }],
    });
    expect(body.outputs).toEqual([{ name: 'b_out', datatype: 'INT64', shape: [1], data: [7] }]);
  });

  it('reports the model metadata with -1 for dynamic dimensions', async () => {
    const response = await app.handle({ method: 'GET', url: '/v2/models/two-inputs', headers: {} });
    expect(JSON.parse(response.body)).toEqual({
      name: 'two-inputs',
      versions: ['1'],
      platform: 'onnx_onnxv1',
      inputs: [
        { name: 'a', datatype: 'FP32', shape: [-1, 3] },
        { name: 'b', datatype: 'INT64', shape: [-1] },
      ],
      outputs: [
        { name: 'a_out', datatype: 'FP32', shape: [-1, 3] },
        { name: 'b_out', datatype: 'INT64', shape: [-1] },
      ],
    });
  });

  const a = { name: 'a', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] };
  const b = { name: 'b', shape: [1], datatype: 'INT64', data: [7] };
  it.each([
    ['no inputs', {}, '"inputs" must be a non-empty array of tensors'],
    ['inputs not an array', { inputs: 'x' }, '"inputs" must be a non-empty array of tensors'],
    ['body is an array', [a, b], 'request body must be a JSON object with an "inputs" array'],
    ['a missing input', { inputs: [a] }, 'missing input: b'],
    ['an unknown input', { inputs: [a, b, { ...b, name: 'c' }] }, 'inputs[2].name "c" is not an input of this model; expected one of: a, b'],
    ['an input given twice', { inputs: [a, a, b] }, 'inputs[1].name "a" is given more than once'],
    ['the wrong datatype', { inputs: [{ ...a, datatype: 'FP64' }, b] }, 'inputs[0] "a" has datatype FP64, the model expects FP32'],
    ['an unknown datatype', { inputs: [{ ...a, datatype: 'FLOAT' }, b] }, 'inputs[0].datatype must be one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES'],
    ['the wrong rank', { inputs: [{ ...a, shape: [3] }, b] }, 'inputs[0] "a" has shape [3], the model expects rank 2 ([-1,3])'],
    ['a fixed dim that differs', { inputs: [{ ...a, shape: [1, 4], data: [1, 2, 3, 4] }, b] }, 'inputs[0] "a" has shape [1,4], the model expects [-1,3]'],
    ['data shorter than the shape', { inputs: [{ ...a, shape: [2, 3] }, b] }, 'inputs[0] "a" has 3 data elements but shape [2,3] needs 6'],
    ['a negative dim', { inputs: [{ ...a, shape: [-1, 3] }, b] }, 'inputs[0].shape must be an array of non-negative integers'],
    ['a string in FP32 data', { inputs: [{ ...a, data: [1, '2', 3] }, b] }, 'inputs[0].data[1] is "2", expected a number for FP32'],
    ['a fraction in INT64 data', { inputs: [a, { ...b, data: [1.5] }] }, 'inputs[1].data[0] is 1.5, expected an integer in range for INT64'],
    ['data not an array', { inputs: [{ ...a, data: 5 }, b] }, 'inputs[0].data must be an array'],
    ['outputs naming an unknown output', { inputs: [a, b], outputs: [{ name: 'zzz' }] }, 'outputs[0].name must be one of: a_out, b_out'],
  ])('400 for %s', async (_case, body, message) => {
    expect(await infer('two-inputs', body)).toEqual({ status: 400, body: { error: message } });
  });

  it('400 for an out-of-range integer', async () => {
    const { status, body } = await infer('id-uint8', { inputs: [{ name: 'x', shape: [1, 2], datatype: 'UINT8', data: [1, 256] }] });
    expect(status).toBe(400);
    expect(body.error).toBe('inputs[0].data[1] is 256, expected an integer in [0, 255] for UINT8');
  });

  it('404 for an unknown model or version', async () => {
    expect(await infer('nope', { inputs: [a] })).toEqual({ status: 404, body: { error: expect.stringMatching(/^model "nope" not found; available: id-bool, /) } });
    const response = await app.handle({ method: 'GET', url: '/v2/models/two-inputs/versions/9', headers: {} });
    expect(response.status).toBe(404);
    expect(JSON.parse(response.body).error).toBe('model "two-inputs" has no version "9"; available: 1');
  });
});
