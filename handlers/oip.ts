// The DataView helpers only: the Float16Array polyfill would add 8 KB to every function's cold start.
import { getFloat16, setFloat16 } from '@petamoriken/float16';
import { Tensor } from 'onnxruntime-node';
import type { InferenceSession } from 'onnxruntime-node';
import { InputError } from './errors.ts';
import type { TensorMap } from './model-definition.ts';
import { isOipDatatype, LITTLE_ENDIAN_HOST, OIP_TO_ORT, oipDatatypeOf, type OipDatatype } from './tensors.ts';

/** Open Inference Protocol v2 request, after JSON parsing. */
export interface OipInferRequest {
  id?: string;
  parameters?: Record<string, unknown>;
  inputs: OipTensor[];
  outputs?: { name: string; parameters?: Record<string, unknown> }[];
}

export interface OipTensor {
  name: string;
  shape: number[];
  datatype: OipDatatype;
  parameters?: Record<string, unknown>;
  data: unknown[];
}

export interface OipInferResponse {
  model_name: string;
  model_version?: string;
  id?: string;
  outputs: OipTensor[];
}

export interface DecodedInferRequest {
  id?: string;
  feeds: TensorMap;
  /** Output names to return; all of the model's outputs when the request names none. */
  outputNames: string[];
}

const INTEGER_RANGES: Partial<Record<OipDatatype, [number, number]>> = {
  UINT8: [0, 0xff],
  UINT16: [0, 0xffff],
  UINT32: [0, 0xffffffff],
  INT8: [-0x80, 0x7f],
  INT16: [-0x8000, 0x7fff],
  INT32: [-0x80000000, 0x7fffffff],
};

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Flatten row-major nested `data`, refusing non-array nesting that does not line up. */
function flattenData(data: unknown, where: string): unknown[] {
  if (!Array.isArray(data)) throw new InputError(`${where}.data must be an array`);
  if (!data.some(Array.isArray)) return data;
  const flat: unknown[] = [];
  const walk = (value: unknown[]): void => {
    for (const item of value) {
      if (Array.isArray(item)) walk(item);
      else flat.push(item);
    }
  };
  walk(data);
  return flat;
}

function badElement(values: unknown[], index: number, expected: string, datatype: OipDatatype, where: string): never {
  throw new InputError(`${where}.data[${index}] is ${JSON.stringify(values[index]) ?? 'undefined'}, expected ${expected} for ${datatype}`);
}

function toTypedData(values: unknown[], datatype: OipDatatype, where: string): Tensor['data'] {
  switch (datatype) {
    case 'BYTES': {
      const strings = new Array<string>(values.length);
      for (let i = 0; i < values.length; i++) {
        const value = values[i];
        if (typeof value !== 'string') badElement(values, i, 'a string', datatype, where);
        strings[i] = value as string;
      }
      return strings;
    }
    case 'BOOL': {
      const bytes = new Uint8Array(values.length);
      for (let i = 0; i < values.length; i++) {
        const value = values[i];
        if (value === true || value === 1) bytes[i] = 1;
        else if (value !== false && value !== 0) badElement(values, i, 'true or false', datatype, where);
      }
      return bytes;
    }
    case 'INT64':
    case 'UINT64': {
      const big = datatype === 'INT64' ? new BigInt64Array(values.length) : new BigUint64Array(values.length);
      const min = datatype === 'INT64' ? -(2n ** 63n) : 0n;
      const max = datatype === 'INT64' ? 2n ** 63n - 1n : 2n ** 64n - 1n;
      for (let i = 0; i < values.length; i++) {
        const value = values[i];
        let parsed: bigint | undefined;
        if (typeof value === 'number' && Number.isSafeInteger(value)) parsed = BigInt(value);
        else if (typeof value === 'string' && /^-?\d{1,20}$/.test(value)) parsed = BigInt(value);
        if (parsed === undefined || parsed < min || parsed > max) badElement(values, i, 'an integer in range', datatype, where);
        big[i] = parsed as bigint;
      }
      return big;
    }
    default: {
      const Constructor = {
        UINT8: Uint8Array,
        UINT16: Uint16Array,
        UINT32: Uint32Array,
        INT8: Int8Array,
        INT16: Int16Array,
        INT32: Int32Array,
        FP16: Float64Array, // checked as numbers, then rounded once to 16 bits
        FP32: Float32Array,
        FP64: Float64Array,
      }[datatype];
      const numbers = new Constructor(values.length);
      const range = INTEGER_RANGES[datatype];
      for (let i = 0; i < values.length; i++) {
        const value = values[i];
        if (typeof value !== 'number') badElement(values, i, 'a number', datatype, where);
        if (range && (!Number.isInteger(value) || (value as number) < range[0] || (value as number) > range[1])) {
          badElement(values, i, `an integer in [${range[0]}, ${range[1]}]`, datatype, where);
        }
        numbers[i] = value as number;
      }
      return datatype === 'FP16' ? toFloat16Bits(numbers as Float64Array) : (numbers as Exclude<Tensor['data'], string[]>);
    }
  }
}

/** What decoding needs to know of a model, computed once per loaded session. */
export interface InferSpec {
  inputs: Map<string, InferenceSession.ValueMetadata>;
  outputNames: readonly string[];
}

export function inferSpecOf(session: InferenceSession): InferSpec {
  return { inputs: new Map(session.inputMetadata.map((meta) => [meta.name, meta])), outputNames: session.outputNames };
}

/** Validate an OIP request against the model's own input metadata and build the feeds. */
export function decodeInferRequest(body: unknown, spec: InferSpec): DecodedInferRequest {
  const { inputs: expected, outputNames } = spec;
  if (!isPlainObject(body)) throw new InputError('request body must be a JSON object with an "inputs" array');
  const { inputs, outputs, id } = body;
  if (id !== undefined && typeof id !== 'string') throw new InputError('"id" must be a string');
  if (!Array.isArray(inputs) || inputs.length === 0) throw new InputError('"inputs" must be a non-empty array of tensors');

  const feeds: TensorMap = {};
  for (let index = 0; index < inputs.length; index++) {
    const input: unknown = inputs[index];
    const where = `inputs[${index}]`;
    if (!isPlainObject(input)) throw new InputError(`${where} must be an object with name, shape, datatype and data`);
    const { name, shape, datatype, data } = input;
    if (typeof name !== 'string') throw new InputError(`${where}.name must be a string`);
    const meta = expected.get(name);
    if (!meta) throw new InputError(`${where}.name "${name}" is not an input of this model; expected one of: ${[...expected.keys()].join(', ')}`);
    if (Object.hasOwn(feeds, name)) throw new InputError(`${where}.name "${name}" is given more than once`);
    if (!isOipDatatype(datatype)) throw new InputError(`${where}.datatype must be one of ${Object.keys(OIP_TO_ORT).join(', ')}`);
    if (!Array.isArray(shape) || !shape.every((dim) => Number.isSafeInteger(dim) && dim >= 0)) {
      throw new InputError(`${where}.shape must be an array of non-negative integers`);
    }
    if (meta.isTensor) {
      const expectedType = oipDatatypeOf(meta.type) ?? meta.type;
      if (expectedType !== datatype) throw new InputError(`${where} "${name}" has datatype ${datatype}, the model expects ${expectedType}`);
      if (meta.shape.length > 0) {
        if (meta.shape.length !== shape.length) {
          throw new InputError(`${where} "${name}" has shape [${shape.join(',')}], the model expects rank ${meta.shape.length} ([${describeShape(meta.shape)}])`);
        }
        meta.shape.forEach((dim, axis) => {
          if (typeof dim === 'number' && dim >= 0 && shape[axis] !== dim) {
            throw new InputError(`${where} "${name}" has shape [${shape.join(',')}], the model expects [${describeShape(meta.shape)}]`);
          }
        });
      }
    }
    const flat = flattenData(data, where);
    const elements = (shape as number[]).reduce((product, dim) => product * dim, 1);
    if (flat.length !== elements) {
      throw new InputError(`${where} "${name}" has ${flat.length} data elements but shape [${shape.join(',')}] needs ${elements}`);
    }
    feeds[name] = new Tensor(OIP_TO_ORT[datatype] as 'float32', toTypedData(flat, datatype, where) as Float32Array, shape as number[]);
  }
  const missing = [...expected.keys()].filter((name) => !Object.hasOwn(feeds, name));
  if (missing.length > 0) throw new InputError(`missing input${missing.length > 1 ? 's' : ''}: ${missing.join(', ')}`);

  let requested: string[] = [...outputNames];
  if (outputs !== undefined) {
    if (!Array.isArray(outputs)) throw new InputError('"outputs" must be an array of {"name"}');
    requested = outputs.map((output: unknown, index) => {
      const name = isPlainObject(output) ? output.name : undefined;
      if (typeof name !== 'string' || !outputNames.includes(name)) {
        throw new InputError(`outputs[${index}].name must be one of: ${outputNames.join(', ')}`);
      }
      return name;
    });
  }
  return { id: id as string | undefined, feeds, outputNames: requested };
}

function describeShape(shape: ReadonlyArray<number | string>): string {
  return shape.map((dim) => (typeof dim === 'number' && dim >= 0 ? dim : -1)).join(',');
}

/** onnxruntime takes and gives float16 as the raw 16-bit patterns, in the machine's byte order. */
function toFloat16Bits(values: Float64Array): Uint16Array {
  const bits = new Uint16Array(values.length);
  const view = new DataView(bits.buffer);
  for (let i = 0; i < values.length; i++) setFloat16(view, i * 2, values[i]!, LITTLE_ENDIAN_HOST);
  return bits;
}

function fromFloat16Bits(bits: Uint16Array): number[] {
  const view = new DataView(bits.buffer, bits.byteOffset, bits.byteLength);
  const values = new Array<number>(bits.length);
  for (let i = 0; i < bits.length; i++) values[i] = getFloat16(view, i * 2, LITTLE_ENDIAN_HOST);
  return values;
}

/** A plain loop: Array.from over a typed array goes through the iterator protocol, several times slower. */
function mapToArray<T, R>(source: ArrayLike<T>, convert: (value: T) => R): R[] {
  const result = new Array<R>(source.length);
  for (let i = 0; i < source.length; i++) result[i] = convert(source[i]!);
  return result;
}

/** A tensor as an OIP output: flat row-major data, 64-bit integers as JSON numbers, FP16 decoded. */
export function encodeTensor(name: string, tensor: Tensor): OipTensor {
  const datatype = oipDatatypeOf(tensor.type);
  if (!datatype) throw new Error(`output ${name} has type ${tensor.type}, which the protocol cannot carry`);
  let data: unknown[];
  switch (datatype) {
    case 'INT64':
    case 'UINT64':
      data = mapToArray(tensor.data as BigInt64Array, Number);
      break;
    case 'BOOL':
      data = mapToArray(tensor.data as Uint8Array, (value) => value !== 0);
      break;
    case 'FP16':
      data = fromFloat16Bits(tensor.data as Uint16Array);
      break;
    case 'BYTES':
      data = tensor.data as string[];
      break;
    default:
      data = mapToArray(tensor.data as Float32Array, (value) => value);
  }
  return { name, datatype, shape: [...tensor.dims], data };
}
