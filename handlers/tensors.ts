import { Tensor } from 'onnxruntime-node';
import type { InferenceSession } from 'onnxruntime-node';
import type { TensorMap } from './model-definition.ts';

/** Whether typed arrays on this machine are little-endian (WAV and onnxruntime's float16 patterns are byte-exact). */
export const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Open Inference Protocol datatypes and the onnxruntime tensor type each one maps to. */
export const OIP_TO_ORT = {
  BOOL: 'bool',
  UINT8: 'uint8',
  UINT16: 'uint16',
  UINT32: 'uint32',
  UINT64: 'uint64',
  INT8: 'int8',
  INT16: 'int16',
  INT32: 'int32',
  INT64: 'int64',
  FP16: 'float16',
  FP32: 'float32',
  FP64: 'float64',
  BYTES: 'string',
} as const satisfies Record<string, Tensor.Type>;

export type OipDatatype = keyof typeof OIP_TO_ORT;

const ORT_TO_OIP = Object.fromEntries(Object.entries(OIP_TO_ORT).map(([oip, ort]) => [ort, oip])) as Record<
  string,
  OipDatatype | undefined
>;

export function isOipDatatype(value: unknown): value is OipDatatype {
  return typeof value === 'string' && Object.hasOwn(OIP_TO_ORT, value);
}

export function oipDatatypeOf(ortType: string): OipDatatype | undefined {
  return ORT_TO_OIP[ortType];
}

/** A model input or output as the protocol describes it: `-1` for every variable dimension. */
export interface TensorSpec {
  name: string;
  datatype: OipDatatype | string;
  shape: number[];
}

export function tensorSpecs(metadata: readonly InferenceSession.ValueMetadata[]): TensorSpec[] {
  return metadata.map((value) => {
    if (!value.isTensor) return { name: value.name, datatype: 'NON_TENSOR', shape: [] };
    return {
      name: value.name,
      datatype: oipDatatypeOf(value.type) ?? value.type.toUpperCase(),
      shape: value.shape.map((dim) => (typeof dim === 'number' && dim >= 0 ? dim : -1)),
    };
  });
}

/** Number of rows along dim 0 shared by every feed, or undefined when the feeds disagree or are scalars. */
export function sharedRowCount(feeds: TensorMap): number | undefined {
  let rows: number | undefined;
  for (const tensor of Object.values(feeds)) {
    const first = tensor.dims[0];
    if (first === undefined) return undefined;
    if (rows === undefined) rows = first;
    else if (rows !== first) return undefined;
  }
  return rows;
}

/** A key that is equal for feeds that can be stacked along dim 0: same names, types and trailing dims. */
export function stackingKey(feeds: TensorMap): string {
  let key = '';
  for (const [name, tensor] of Object.entries(feeds)) key += `${name}:${tensor.type}:${tensor.dims.slice(1).join('x')};`;
  return key;
}

/** Every numeric tensor buffer: the same `set`/`subarray` surface, whatever the element type. */
type TypedArray = Exclude<Tensor['data'], string[]>;

/** Concatenate tensors with equal trailing dims along dim 0. */
export function stackTensors(tensors: readonly Tensor[]): Tensor {
  const first = tensors[0];
  if (!first) throw new Error('stackTensors needs at least one tensor');
  if (tensors.length === 1) return first;
  const rows = tensors.reduce((sum, tensor) => sum + (tensor.dims[0] ?? 0), 0);
  const dims = [rows, ...first.dims.slice(1)];
  if (first.type === 'string') {
    return new Tensor('string', tensors.flatMap((tensor) => tensor.data as string[]), dims);
  }
  const total = tensors.reduce((sum, tensor) => sum + tensor.data.length, 0);
  const source = first.data as TypedArray;
  const data = new (source.constructor as new (length: number) => TypedArray)(total);
  let offset = 0;
  for (const tensor of tensors) {
    data.set(tensor.data as never, offset);
    offset += tensor.data.length;
  }
  return new Tensor(first.type as 'float32', data as Float32Array, dims);
}

/** Rows [start, start + count) of a tensor whose dim 0 is `totalRows`; other tensors are shared as they are. */
export function sliceRows(tensor: Tensor, start: number, count: number, totalRows: number): Tensor {
  if (tensor.dims[0] !== totalRows || (start === 0 && count === totalRows)) return tensor;
  const rowSize = tensor.dims.slice(1).reduce((product, dim) => product * dim, 1);
  const dims = [count, ...tensor.dims.slice(1)];
  const from = start * rowSize;
  const to = (start + count) * rowSize;
  if (tensor.type === 'string') return new Tensor('string', (tensor.data as string[]).slice(from, to), dims);
  const data = (tensor.data as Float32Array).subarray(from, to);
  return new Tensor(tensor.type as 'float32', data, dims);
}
